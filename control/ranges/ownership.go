package ranges

// Ownership is the published form of the range table for one node: one bit
// per bucket, set when the node accepts new connections in that bucket.
type Ownership [Buckets / 64]uint64

// Set marks bucket b as owned.
func (o *Ownership) Set(b uint16) { o[b>>6] |= 1 << (b & 63) }

// Has reports whether bucket b is owned.
func (o *Ownership) Has(b uint16) bool { return o[b>>6]>>(b&63)&1 == 1 }

// Count is the number of owned buckets.
func (o *Ownership) Count() int {
	n := 0
	for _, w := range o {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

// Ownership is the share of member id in t: the buckets it owns.
func (t *Table) Ownership(id string) Ownership {
	var o Ownership
	self := t.Index(id)
	if self < 0 {
		return o
	}
	for b, owner := range t.Owner {
		if int(owner) == self {
			o.Set(uint16(b))
		}
	}
	return o
}

// Union sets every bucket of p in o.
func (o *Ownership) Union(p *Ownership) {
	for i := range o {
		o[i] |= p[i]
	}
}
