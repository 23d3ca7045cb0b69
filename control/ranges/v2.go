package ranges

import (
	"cmp"
	"math"
	"slices"
)

// Version 2: exact shares, fast builds.
//
// Weighted rendezvous hashing (version 1) gives each member its share only
// on average: with 256 members a share strays by a quarter. Version 2 keeps
// a weighted rendezvous race as the preference and then corrects the counts
// to exact quotas:
//
//  1. Quotas: weights are quantized to multiples of 2^-20 and each member's
//     quota is the largest-remainder rounding of 65536·w/Σw, ties to the
//     lower index in ID order: every share is within one bucket of
//     65536·w/Σw and the quotas sum to 65536.
//  2. Preference: every member visits the buckets in an order of its own
//     (rank 0, 1, 2, ...; see order) and reaches its rank-k bucket at time
//     unitTime(k)/w. A bucket prefers the member that reaches it first, ties
//     to the lower index: a weighted exponential race, which is what
//     rendezvous hashing is.
//  3. Correction: a member preferred by more buckets than its quota keeps
//     those it reaches first and releases the others. The released buckets
//     go to the members below quota by the stable matching on the same
//     arrival times: taking (bucket, member) pairs in order of the member's
//     arrival time at the bucket, then member index, a pair is assigned when
//     the bucket is still unassigned and the member still below quota.
//
// Every step is a function of (seed, IDs, quantized weights) alone, and the
// only floating-point operations are single IEEE-754 divisions and
// multiplications, each rounded on its own, so every platform builds the
// same table. docs/protocol.md specifies it for other implementations.

// weightQuantum is the resolution of version-2 weights: a weight is
// rounded to a multiple of 2^-20.
const weightQuantum = 1 << 20

// MaxWeightV2 bounds version-2 weights; larger ones count as MaxWeightV2.
// It is far above gossip's capacity bound (1e6), and it keeps 65536·Σw in
// 64-bit integers for any member count.
const MaxWeightV2 = 1 << 24

// quantize maps a weight to its version-2 integer form, in units of 2^-20:
// 0 for a weight that is zero, negative, NaN or infinite (such a member owns
// nothing).
func quantize(w float64) uint64 {
	if !(w > 0) || math.IsInf(w, 1) {
		return 0
	}
	return uint64(math.Round(math.Min(w, MaxWeightV2) * weightQuantum))
}

// Quotas returns each member's version-2 quota, in the order of the members
// sorted by ID (the order of Table.Members): the largest-remainder rounding
// of 65536·w/Σw over the quantized weights, ties to the lower index. It is
// what BuildV(AlgoV2, ...) gives each member, bucket for bucket. It returns
// nil for input BuildV would reject.
func Quotas(ms []Member) []int {
	s, err := sortedMembers(ms)
	if err != nil {
		return nil
	}
	wq := make([]uint64, len(s))
	for i, m := range s {
		wq[i] = quantize(m.Weight)
	}
	return quotas(wq)
}

func quotas(wq []uint64) []int {
	var sum uint64
	for _, w := range wq {
		sum += w
	}
	q := make([]int, len(wq))
	if sum == 0 {
		return q
	}
	rem := make([]uint64, len(wq))
	left := Buckets
	var order []int
	for i, w := range wq {
		q[i] = int(Buckets * w / sum)
		rem[i] = Buckets * w % sum
		left -= q[i]
		if w > 0 {
			order = append(order, i)
		}
	}
	// The buckets left over (fewer than the members with a positive
	// weight) go one each to the largest remainders, ties to the lower
	// index.
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(rem[b], rem[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, i := range order[:left] {
		q[i]++
	}
	return q
}

// A member's order of the buckets is stratified over 64 chunks of 1024
// consecutive buckets: rank k lies in chunk c = k mod 64, at slot
// p(j XOR in[c]) XOR out[c] of it, j = k div 64, where p is a permutation of
// 0..1023 of the member's own and in, out are per-chunk masks of its own.
// Every member thus spreads its early ranks evenly over the table (which
// keeps shares close to their quotas before any correction), each chunk
// runs its own race, and the builder settles one chunk at a time in the
// CPU cache.
const (
	chunkBits = 10
	chunkSize = 1 << chunkBits      // buckets per chunk
	chunks    = Buckets / chunkSize // 64
	slotMask  = chunkSize - 1       // slot within a chunk
	chunkMask = chunks - 1          // chunk of a rank
	rankShift = 16 - chunkBits      // log2(chunks)
	halfBits  = chunkBits / 2       // xorshift width
)

// order is one member's order: a bijection of 0..1023 made of three rounds
// of multiplication by an odd constant modulo 1024 and a 5-bit xorshift,
// and the chunk masks, all drawn from the member's key by splitmix64.
type order struct {
	mul, inv [3]uint16 // odd multipliers and their inverses modulo 1024
	in, out  [chunks]uint16
}

func newOrder(key uint64) order {
	var o order
	w := splitmix64(key)
	for r := range o.mul {
		m := uint16(w>>(16*r))&slotMask | 1
		o.mul[r] = m
		// Newton's iteration for the inverse modulo 2^10 (and beyond):
		// x = m is right to 3 bits for an odd m, each step doubles that.
		x := m
		for range 3 {
			x *= 2 - m*x
		}
		o.inv[r] = x & slotMask
	}
	for c := range chunks {
		v := splitmix64(key + 1 + uint64(c))
		o.in[c] = uint16(v) & slotMask
		o.out[c] = uint16(v>>16) & slotMask
	}
	return o
}

// mix permutes 0..1023.
func (o *order) mix(x uint16) uint16 {
	x = x * o.mul[0] & slotMask
	x ^= x >> halfBits
	x = x * o.mul[1] & slotMask
	x ^= x >> halfBits
	x = x * o.mul[2] & slotMask
	x ^= x >> halfBits
	return x
}

// unmix inverts mix (x ^= x>>5 is its own inverse on 10 bits).
func (o *order) unmix(x uint16) uint16 {
	x ^= x >> halfBits
	x = x * o.inv[2] & slotMask
	x ^= x >> halfBits
	x = x * o.inv[1] & slotMask
	x ^= x >> halfBits
	x = x * o.inv[0] & slotMask
	return x
}

// slot is where in chunk c the member's rank 64·j + c lies.
func (o *order) slot(c int, j uint16) uint16 {
	return o.mix(j^o.in[c]) ^ o.out[c]
}

// bucket is the member's rank-k bucket.
func (o *order) bucket(k int) uint16 {
	c := k & chunkMask
	return uint16(c)<<chunkBits | o.slot(c, uint16(k>>rankShift))
}

// rank is the member's rank of bucket b: the inverse of bucket.
func (o *order) rank(b uint16) int {
	c := int(b >> chunkBits)
	return int(o.unmix(b&slotMask^o.out[c])^o.in[c])<<rankShift | c
}

// candidatesPerBucket sets how far each member walks its order before the
// fallback: on average this many members reach a bucket before the cut-off,
// and the buckets nobody reached (e^-6 of them) are settled by asking every
// member. It changes the speed, never the table.
const candidatesPerBucket = 6

// builder holds one version-2 build.
type builder struct {
	active []int     // members with a positive weight, ascending index
	quota  []int     // per member
	orders []order   // per member
	inv    []float64 // 1/quantized weight, per member
	times  []float64 // unit arrival times, by chunk (unitTimes)
	owner  *[Buckets]uint16
	rank   []int32 // the owner's rank of each bucket
}

// arrival is member i's arrival time at its rank-k bucket.
func (b *builder) arrival(i, k int) float64 {
	return float64(b.times[(k&chunkMask)<<chunkBits|k>>rankShift] * b.inv[i])
}

// buildV2 fills t.Owner for members sorted by ID with unique IDs.
func buildV2(seed uint32, t *Table) {
	ms := t.Members
	n := len(ms)
	wq := make([]uint64, n)
	bd := &builder{orders: make([]order, n), inv: make([]float64, n), times: unitTimes(),
		owner: &t.Owner, rank: make([]int32, Buckets)}
	var sum uint64
	for i, m := range ms {
		wq[i] = quantize(m.Weight)
		sum += wq[i]
		if wq[i] > 0 {
			bd.active = append(bd.active, i)
			bd.orders[i] = newOrder(memberSeed(seed, m.ID))
			bd.inv[i] = 1 / float64(wq[i])
		}
	}
	if len(bd.active) == 0 {
		for b := range t.Owner {
			t.Owner[b] = NoOwner
		}
		return
	}
	bd.quota = quotas(wq)
	reach, late := bd.race(sum)
	pool, count := bd.release(reach, late)
	bd.match(pool, count)
}

// race sets every bucket's owner to the member that reaches it first. It
// returns, per member, how many ranks it walked before the cut-off and the
// buckets it won beyond it.
func (bd *builder) race(sum uint64) (reach []int, late [][]uint16) {
	n := len(bd.orders)
	// Members walk their orders only while their arrival time is below the
	// cut-off tau; a bucket nobody reached by then is settled by asking
	// every member (the same arrival times, so the same winner).
	tau := float64(candidatesPerBucket/math.Ln2*(1<<32)) / float64(sum)
	reach = make([]int, n)
	late = make([][]uint16, n)
	for _, i := range bd.active {
		reach[i] = searchRank(func(k int) bool { return bd.arrival(i, k) >= tau })
	}
	// best holds the earliest arrival at each slot of the chunk as IEEE-754
	// bits: for positive floats the bit patterns order like the values,
	// which lets the loop below pick the minimum without a branch.
	var best [chunkSize]uint64
	var win [chunkSize]uint32 // winner index<<16 | its slot number j
	inf := math.Float64bits(math.Inf(1))
	for c := range chunks {
		for s := range best {
			best[s] = inf
		}
		base := c << chunkBits
		times := bd.times[base : base+chunkSize]
		for _, i := range bd.active {
			slots := (reach[i] - c + chunks - 1) >> rankShift // ranks 64·j + c below reach
			if slots <= 0 {
				continue
			}
			// order.slot, unrolled with the chunk's masks hoisted.
			o, inv := &bd.orders[i], bd.inv[i]
			in, out, m0, m1, m2 := o.in[c], o.out[c], o.mul[0], o.mul[1], o.mul[2]
			for j, tj := range times[:slots] {
				x := uint16(j) ^ in
				x = x * m0 & slotMask
				x ^= x >> halfBits
				x = x * m1 & slotMask
				x ^= x >> halfBits
				x = x * m2 & slotMask
				x ^= x >> halfBits
				s := (x ^ out) & slotMask
				a, cur := math.Float64bits(float64(tj*inv)), best[s]
				earlier := uint64(int64(a-cur) >> 63) // all ones when a < cur
				best[s] = cur ^ (a^cur)&earlier
				w := win[s]
				win[s] = w ^ (uint32(i)<<16|uint32(j)^w)&uint32(earlier)
			}
		}
		for s := range best {
			b := uint16(base + s)
			if best[s] != inf {
				bd.owner[b] = uint16(win[s] >> 16)
				bd.rank[b] = int32(win[s]&0xffff)<<rankShift | int32(c)
				continue
			}
			first := math.Inf(1)
			for _, i := range bd.active {
				k := bd.orders[i].rank(b)
				if a := bd.arrival(i, k); a < first {
					first = a
					bd.owner[b], bd.rank[b] = uint16(i), int32(k)
				}
			}
			late[bd.owner[b]] = append(late[bd.owner[b]], b)
		}
	}
	return reach, late
}

// release makes members preferred by more buckets than their quota keep
// the ones they reach first. It returns the others, the pool, and how many
// buckets each member keeps.
func (bd *builder) release(reach []int, late [][]uint16) (pool []uint16, count []int) {
	count = make([]int, len(bd.orders))
	for _, o := range bd.owner {
		count[o]++
	}
	for _, i := range bd.active {
		extra := count[i] - bd.quota[i]
		if extra <= 0 {
			continue
		}
		count[i] = bd.quota[i]
		// Buckets won beyond the cut-off are the latest arrivals, latest
		// first; then walk back from the cut-off.
		l := late[i]
		slices.SortFunc(l, func(a, b uint16) int { return cmp.Compare(bd.rank[b], bd.rank[a]) })
		take := min(extra, len(l))
		pool = append(pool, l[:take]...)
		extra -= take
		o := &bd.orders[i]
		for k := reach[i] - 1; extra > 0 && k >= 0; k-- {
			if b := o.bucket(k); int(bd.owner[b]) == i {
				pool = append(pool, b)
				extra--
			}
		}
	}
	return pool, count
}

// match gives the pool to the members below quota by member-proposing
// deferred acceptance. Both sides rank a (bucket, member) pair by the
// member's arrival time at the bucket, then by member index, so the stable
// matching is unique: it does not depend on the order of proposals, and it
// is the greedy assignment in pair order described above.
func (bd *builder) match(pool []uint16, count []int) {
	if len(pool) == 0 {
		return
	}
	// The owners' ranks are no longer needed: rank now maps a pool bucket
	// to its position in pool, and -1 marks the others.
	at := bd.rank
	for b := range at {
		at[b] = -1
	}
	for x, b := range pool {
		at[b] = int32(x)
	}
	const free = -1
	holder := make([]int32, len(pool))
	holderAt := make([]float64, len(pool))
	for x := range holder {
		holder[x] = free
	}
	n := len(bd.orders)
	need := make([]int, n)
	var queue []int
	for _, i := range bd.active {
		if d := bd.quota[i] - count[i]; d > 0 {
			need[i] = d
			queue = append(queue, i)
		}
	}
	props := make([]proposals, n)
	walk := len(pool) > Buckets/16
	var slab []uint32
	if !walk {
		slab = make([]uint32, len(queue)*len(pool))
	}
	for x, i := range queue {
		props[i] = newProposals(&bd.orders[i], at, pool, walk, slab[min(x*len(pool), len(slab)):], need[i])
	}
	held := make([]int, n)
	for len(queue) > 0 {
		i := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for held[i] < need[i] {
			k, b, ok := props[i].next()
			if !ok {
				panic("ranges: deferred acceptance ran out of buckets") // impossible: needs sum to the pool size
			}
			a, x := bd.arrival(i, k), at[b]
			h := int(holder[x])
			if h != free && (holderAt[x] < a || (holderAt[x] == a && h < i)) {
				continue
			}
			if h != free {
				held[h]--
				queue = append(queue, h)
			}
			holder[x], holderAt[x] = int32(i), a
			held[i]++
		}
	}
	for x, b := range pool {
		bd.owner[b] = uint16(holder[x])
	}
}

// proposals yields a member's pool buckets in its order (by rank). It
// either ranks every pool bucket and pops them from a heap (cheaper for a
// small pool) or walks the member's order (for a large one); both give the
// same sequence. The heap first holds only the ranks below a cut-off
// chosen for a few times the member's need, the rest waiting in later, so
// that heapifying pool buckets the member never gets to costs nothing.
type proposals struct {
	o     *order
	at    []int32  // position in the pool of each bucket, -1 if not in it
	heap  []uint32 // rank<<16 | bucket, a binary min-heap
	later []uint32 // ranks at or above the cut-off, not yet a heap
	walk  int      // next rank to look at, when walking
	walks bool
}

// newProposals returns o's proposals over the pool: walking its order, or
// from heaps built in buf (len(pool) entries).
func newProposals(o *order, at []int32, pool []uint16, walk bool, buf []uint32, need int) proposals {
	pr := proposals{o: o, at: at, walks: walk}
	if walk {
		return pr
	}
	cut := uint32(min(Buckets, (4*need+16)*Buckets/len(pool))) << 16
	h := buf[:len(pool)]
	front, back := 0, len(h)
	for _, b := range pool {
		key := uint32(o.rank(b))<<16 | uint32(b)
		if key < cut {
			h[front] = key
			front++
		} else {
			back--
			h[back] = key
		}
	}
	pr.heap, pr.later = h[:front], h[front:]
	heapify(pr.heap)
	return pr
}

func heapify(h []uint32) {
	for j := len(h)/2 - 1; j >= 0; j-- {
		siftDown(h, j)
	}
}

func (pr *proposals) next() (rank int, bucket uint16, ok bool) {
	if pr.walks {
		for ; pr.walk < Buckets; pr.walk++ {
			if b := pr.o.bucket(pr.walk); pr.at[b] >= 0 {
				pr.walk++
				return pr.walk - 1, b, true
			}
		}
		return 0, 0, false
	}
	if len(pr.heap) == 0 {
		if len(pr.later) == 0 {
			return 0, 0, false
		}
		pr.heap, pr.later = pr.later, nil
		heapify(pr.heap)
	}
	h := pr.heap
	top := h[0]
	h[0] = h[len(h)-1]
	h = h[:len(h)-1]
	siftDown(h, 0)
	pr.heap = h
	return int(top >> 16), uint16(top), true
}

func siftDown(h []uint32, j int) {
	for {
		c := 2*j + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h[c+1] < h[c] {
			c++
		}
		if h[j] <= h[c] {
			return
		}
		h[j], h[c] = h[c], h[j]
		j = c
	}
}

// searchRank is the smallest k in [0, Buckets] for which done(k) holds,
// done being monotone.
func searchRank(done func(int) bool) int {
	lo, hi := 0, Buckets
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if done(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// contentHashV2 is like the version-1 hash, but starts with the algorithm
// name, so that tables of different versions never look equal.
func (t *Table) contentHashV2() string {
	return t.hashWith("shoal range table v2\x00")
}
