package ranges

import (
	"cmp"
	"math"
	"slices"
	"sync"
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

// mix permutes 0..1023. It computes in 32 bits, which keeps the low 10
// bits (all that is kept) as 16-bit arithmetic would, and the compiler
// keeps 32-bit values in registers.
func (o *order) mix(x uint16) uint16 {
	return uint16(mixWith(uint32(x), uint32(o.mul[0]), uint32(o.mul[1]), uint32(o.mul[2])))
}

// mixWith is mix with the multipliers given; x below 1024. slotsGo and
// rowGo use it; their AVX2 twins compute it 16 lanes at a time.
func mixWith(x, m0, m1, m2 uint32) uint32 {
	x = x * m0 & slotMask
	x ^= x >> halfBits
	x = x * m1 & slotMask
	x ^= x >> halfBits
	x = x * m2 & slotMask
	return x ^ x>>halfBits
}

// unmix inverts mix (x ^= x>>5 is its own inverse on 10 bits).
func (o *order) unmix(x16 uint16) uint16 {
	x := uint32(x16)
	x ^= x >> halfBits
	x = x * uint32(o.inv[2]) & slotMask
	x ^= x >> halfBits
	x = x * uint32(o.inv[1]) & slotMask
	x ^= x >> halfBits
	x = x * uint32(o.inv[0]) & slotMask
	return uint16(x)
}

// slot is where in chunk c the member's rank 64·j + c lies.
func (o *order) slot(c int, j uint16) uint16 {
	return o.mix(j^o.in[c&chunkMask]) ^ o.out[c&chunkMask]
}

// bucket is the member's rank-k bucket.
func (o *order) bucket(k int) uint16 {
	c := k & chunkMask
	return uint16(c)<<chunkBits | o.slot(c, uint16(k>>rankShift))
}

// rank is the member's rank of bucket b: the inverse of bucket.
func (o *order) rank(b uint16) int {
	c := int(b>>chunkBits) & chunkMask
	return int(o.unmix(b&slotMask^o.out[c])^o.in[c])<<rankShift | c
}

// candidatesPerBucket sets how far each member walks its order before the
// fallback: on average this many members reach a bucket before the cut-off,
// and the buckets nobody reached (e^-6 of them) are settled by asking every
// member. It changes the speed, never the table. (Measured: the build time
// is flat from 5 to 6 at 3 to 256 members, and grows below 4 and above 7.)
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

// rankPool recycles the builders' 256 KiB rank arrays: a build writes
// every entry before it reads one, and a new array each build made the
// garbage collector run every few builds.
var rankPool = sync.Pool{New: func() any { return new([Buckets]int32) }}

// buildV2 fills t.Owner for members sorted by ID with unique IDs.
func buildV2(seed uint32, t *Table) {
	ms := t.Members
	n := len(ms)
	wq := make([]uint64, n)
	rank := rankPool.Get().(*[Buckets]int32)
	defer rankPool.Put(rank)
	bd := &builder{orders: make([]order, n), inv: make([]float64, n), times: unitTimes(),
		owner: &t.Owner, rank: rank[:]}
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
	var sl [chunkSize]uint16  // a member's slots in the chunk (raceSlots)
	inf := math.Float64bits(math.Inf(1))
	var miss []uint16
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
			o := &bd.orders[i]
			raceSlots(&best, &win, &sl, times[:slots], bd.inv[i], uint32(i)<<16,
				uint32(o.in[c]), uint32(o.out[c]), uint32(o.mul[0]), uint32(o.mul[1]), uint32(o.mul[2]))
		}
		miss = miss[:0]
		for s := range best {
			if best[s] == inf {
				miss = append(miss, uint16(s))
				continue
			}
			b := base + s
			bd.owner[b] = uint16(win[s] >> 16)
			bd.rank[b] = int32(win[s]&0xffff)<<rankShift | int32(c)
		}
		if len(miss) > 0 {
			bd.settle(c, miss, late)
		}
	}
	return reach, late
}

// settle gives each slot of chunk c in miss, which no member reached before
// the cut-off, to the member that reaches it first, ties to the lower index:
// every active member's rank of the slot (order.rank unrolled) and its
// arrival time there.
func (bd *builder) settle(c int, miss []uint16, late [][]uint16) {
	base := c << chunkBits
	times := bd.times[base : base+chunkSize]
	for _, s := range miss {
		first, who := math.Inf(1), uint32(0) // index<<16 | slot number j
		for _, i := range bd.active {
			o := &bd.orders[i]
			x := uint32(s) ^ uint32(o.out[c])
			x ^= x >> halfBits
			x = x * uint32(o.inv[2]) & slotMask
			x ^= x >> halfBits
			x = x * uint32(o.inv[1]) & slotMask
			x ^= x >> halfBits
			x = (x*uint32(o.inv[0]) ^ uint32(o.in[c])) & slotMask
			if t := times[x] * bd.inv[i]; t < first {
				first, who = t, uint32(i)<<16|x
			}
		}
		b := base + int(s)
		i := who >> 16
		bd.owner[b] = uint16(i)
		bd.rank[b] = int32(who&0xffff)<<rankShift | int32(c)
		late[i] = append(late[i], uint16(b))
	}
}

// raceSlots runs one member's walk over one chunk: its slot number j
// reaches slot order.slot(c, j) at times[j]·inv, and a slot takes the
// earliest arrival (ties keep the earlier member, which came first). It
// computes the slots first (chunkSlots, 16 at a time where the CPU can),
// then takes the minimum slot by slot, branch-free: as a member's slots are
// distinct, no store of this loop holds up a load of another.
func raceSlots(best *[chunkSize]uint64, win *[chunkSize]uint32, sl *[chunkSize]uint16, times []float64, inv float64, tag, in, out, m0, m1, m2 uint32) {
	chunkSlots(sl, len(times), in, out, m0, m1, m2)
	slots := sl[:len(times)]
	times = times[:len(slots)]
	for j, s := range slots {
		s &= slotMask
		a, cur := math.Float64bits(times[j]*inv), best[s]
		earlier := uint64(int64(a-cur) >> 63) // all ones when a < cur
		best[s] = cur ^ (a^cur)&earlier
		w := win[s]
		win[s] = w ^ (tag|uint32(j)^w)&uint32(earlier)
	}
}

// release makes members preferred by more buckets than their quota keep
// the ones they reach first. It returns the others, the pool, and how many
// buckets each member keeps.
func (bd *builder) release(reach []int, late [][]uint16) (pool []uint16, count []int) {
	count = make([]int, len(bd.orders))
	var row [chunks]uint16
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
		// A row of 64 ranks at a time (rankRow), each row from its end.
		o := &bd.orders[i]
		m0, m1, m2 := uint32(o.mul[0]), uint32(o.mul[1]), uint32(o.mul[2])
		for k := reach[i] - 1; extra > 0 && k >= 0; {
			j := k >> rankShift
			rankRow(&row, &o.in, &o.out, 0, uint32(j), m0, m1, m2)
			for c := k & chunkMask; extra > 0 && c >= 0; c-- {
				if b := row[c]; int(bd.owner[b]) == i {
					pool = append(pool, b)
					extra--
				}
			}
			k = j<<rankShift - 1
		}
	}
	return pool, count
}

// match gives the pool to the members below quota: the greedy assignment
// in pair order described above, which is the unique stable matching of
// the two sides (both rank a (bucket, member) pair by the member's arrival
// time at the bucket, then by member index).
//
// Every member below quota walks its own order (rising arrival times) to
// its next pool bucket still free; a heap keyed by (arrival, index) merges
// the walks, so pairs are decided in the global order without ranking
// every pool bucket for every member. A pair is final when decided: the
// bucket is free (the walk skips taken ones, which never free up again) and
// the member still below quota, or it would not be walking.
func (bd *builder) match(pool []uint16, count []int) {
	if len(pool) == 0 {
		return
	}
	m := &matcher{bd: bd, pool: slices.Clone(pool), nfree: len(pool), pos: make([]int, len(bd.orders))}
	for _, b := range pool {
		m.free[b>>6] |= 1 << (b & 63)
	}
	need := make([]int, len(bd.orders))
	var h walkHeap
	for _, i := range bd.active {
		if d := bd.quota[i] - count[i]; d > 0 {
			need[i] = d
			if w, ok := m.nextFree(i); ok {
				h = append(h, w)
			}
		}
	}
	h.init()
	for len(h) > 0 {
		w := h[0]
		i := int(w.member)
		b := bd.orders[i].bucket(int(w.rank))
		if m.isFree(b) {
			m.free[b>>6] &^= 1 << (b & 63)
			m.nfree--
			bd.owner[b] = uint16(i)
			need[i]--
		}
		if need[i] == 0 {
			h.pop()
		} else if next, ok := m.nextFree(i); ok {
			h[0] = next
			h.down(0)
		} else {
			panic("ranges: stable matching ran out of buckets") // impossible: needs sum to the pool size
		}
	}
}

// matcher holds the walks of one match.
type matcher struct {
	bd    *builder
	free  [Buckets / 64]uint64 // a bit for each pool bucket still free
	pool  []uint16             // the pool buckets, taken ones dropped now and then
	nfree int                  // free pool buckets
	pos   []int                // next rank each member looks at
	row   [chunks]uint16       // buckets of one row of ranks (walkTo)
}

func (m *matcher) isFree(b uint16) bool { return m.free[b>>6]>>(b&63)&1 != 0 }

// walker is a member's next pair: its arrival time at its rank-rank bucket.
type walker struct {
	at     float64
	member int32
	rank   int32
}

func (a walker) before(b walker) bool {
	return a.at < b.at || (a.at == b.at && a.member < b.member)
}

// nextFree advances member i's walk to its next pool bucket still free.
// While free buckets are many it walks the member's order (65536/free
// steps to the next on average); once they are few, ranking each of them
// is cheaper, and gives the same bucket: the free one of least rank at or
// after the walk's position.
func (m *matcher) nextFree(i int) (walker, bool) {
	o := &m.bd.orders[i]
	if m.nfree*m.nfree >= Buckets/4 {
		if k := m.walkTo(o, m.pos[i]); k < Buckets {
			m.pos[i] = k + 1
			return walker{at: m.bd.arrival(i, k), member: int32(i), rank: int32(k)}, true
		}
		m.pos[i] = Buckets
		return walker{}, false
	}
	m.compact()
	best := Buckets
	for _, b := range m.pool {
		if !m.isFree(b) {
			continue // taken since the last compact
		}
		if k := o.rank(b); k >= m.pos[i] && k < best {
			best = k
		}
	}
	if best == Buckets {
		m.pos[i] = Buckets
		return walker{}, false
	}
	m.pos[i] = best + 1
	return walker{at: m.bd.arrival(i, best), member: int32(i), rank: int32(best)}, true
}

// walkTo returns member o's first rank at or after k whose bucket is a
// free pool bucket, or Buckets. It computes the buckets of a row of 64
// ranks at a time (rankRow: one rank in each chunk), then looks them up.
func (m *matcher) walkTo(o *order, k int) int {
	m0, m1, m2 := uint32(o.mul[0]), uint32(o.mul[1]), uint32(o.mul[2])
	for k < Buckets {
		j, c := k>>rankShift, k&chunkMask
		rankRow(&m.row, &o.in, &o.out, c, uint32(j), m0, m1, m2)
		for ; c < chunks; c++ {
			if b := m.row[c] & (Buckets - 1); m.free[b>>6]>>(b&63)&1 != 0 {
				return j<<rankShift | c
			}
		}
		k = (j + 1) << rankShift
	}
	return Buckets
}

// compact drops taken buckets from the pool list once they are half of it.
func (m *matcher) compact() {
	if 2*m.nfree > len(m.pool) {
		return
	}
	m.pool = slices.DeleteFunc(m.pool, func(b uint16) bool { return !m.isFree(b) })
}

// walkHeap is a binary min-heap of walkers in pair order.
type walkHeap []walker

func (h walkHeap) init() {
	for j := len(h)/2 - 1; j >= 0; j-- {
		h.down(j)
	}
}

func (h *walkHeap) pop() {
	old := *h
	old[0] = old[len(old)-1]
	*h = old[:len(old)-1]
	h.down(0)
}

func (h walkHeap) down(j int) {
	for {
		c := 2*j + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h[c+1].before(h[c]) {
			c++
		}
		if !h[c].before(h[j]) {
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
