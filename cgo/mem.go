package dpdk

/*
#include <rte_mbuf_core.h>
#include "shoal_dpdk.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// DefaultDataRoom is RTE_MBUF_DEFAULT_BUF_SIZE: 2048 bytes of data plus
// RTE_PKTMBUF_HEADROOM (128).
const DefaultDataRoom = C.RTE_MBUF_DEFAULT_BUF_SIZE

// Mempool is a packet mbuf pool (struct rte_mempool).
type Mempool struct {
	Name string
	mp   *C.struct_rte_mempool
}

// NewPktMempool creates a pool of n mbufs with a per-lcore cache of cache
// mbufs and dataRoom bytes of buffer each (headroom included; use
// DefaultDataRoom), on any NUMA socket (rte_pktmbuf_pool_create with
// SOCKET_ID_ANY). n is best a power of two minus one. Names are unique per
// process (RTE_MEMPOOL_NAMESIZE-1 = 25 characters at most).
func NewPktMempool(name string, n, cache uint32, dataRoom uint16) (*Mempool, error) {
	if err := ready(); err != nil {
		return nil, err
	}
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	r := C.shoal_pktmbuf_pool_create(cs, C.uint(n), C.uint(cache), C.uint16_t(dataRoom))
	if r.ptr == nil {
		return nil, newError(fmt.Sprintf("create mempool %q (n=%d cache=%d dataroom=%d)", name, n, cache, dataRoom), r)
	}
	freeLog(r.log)
	return &Mempool{Name: name, mp: (*C.struct_rte_mempool)(r.ptr)}, nil
}

// Free frees the pool (rte_mempool_free). Every mbuf must be back in it and
// no port may still use it. Free on a freed or nil pool does nothing.
func (m *Mempool) Free() {
	if m == nil || m.mp == nil {
		return
	}
	C.shoal_mempool_free(m.mp)
	m.mp = nil
}

// Avail returns the number of free mbufs (caches included).
func (m *Mempool) Avail() uint32 {
	if m == nil || m.mp == nil {
		return 0
	}
	return uint32(C.shoal_mempool_avail(m.mp))
}

// InUse returns the number of mbufs taken from the pool.
func (m *Mempool) InUse() uint32 {
	if m == nil || m.mp == nil {
		return 0
	}
	return uint32(C.shoal_mempool_in_use(m.mp))
}

// Ptr returns the struct rte_mempool* for other cgo packages (C types are
// per package: convert with (*C.struct_rte_mempool)(p)). Nil after Free.
func (m *Mempool) Ptr() unsafe.Pointer {
	if m == nil {
		return nil
	}
	return unsafe.Pointer(m.mp)
}

// Ring is a DPDK ring of pointers (struct rte_ring).
type Ring struct {
	Name string
	r    *C.struct_rte_ring
}

// NewRing creates a ring of size slots (a power of two; it holds size-1
// entries) on any NUMA socket. singleProducer/singleConsumer select the
// RING_F_SP_ENQ / RING_F_SC_DEQ fast paths; only choose them when exactly
// one thread enqueues / dequeues.
func NewRing(name string, size uint32, singleProducer, singleConsumer bool) (*Ring, error) {
	if err := ready(); err != nil {
		return nil, err
	}
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	r := C.shoal_ring_create(cs, C.uint(size), cbool(singleProducer), cbool(singleConsumer))
	if r.ptr == nil {
		return nil, newError(fmt.Sprintf("create ring %q (size=%d)", name, size), r)
	}
	freeLog(r.log)
	return &Ring{Name: name, r: (*C.struct_rte_ring)(r.ptr)}, nil
}

// Free frees the ring (rte_ring_free). Free on a freed or nil ring does
// nothing.
func (r *Ring) Free() {
	if r == nil || r.r == nil {
		return
	}
	C.shoal_ring_free(r.r)
	r.r = nil
}

// Count returns the number of entries in the ring.
func (r *Ring) Count() uint32 {
	if r == nil || r.r == nil {
		return 0
	}
	return uint32(C.shoal_ring_count(r.r))
}

// Capacity returns how many entries the ring can hold.
func (r *Ring) Capacity() uint32 {
	if r == nil || r.r == nil {
		return 0
	}
	return uint32(C.shoal_ring_capacity(r.r))
}

// Ptr returns the struct rte_ring* for other cgo packages. Nil after Free.
func (r *Ring) Ptr() unsafe.Pointer {
	if r == nil {
		return nil
	}
	return unsafe.Pointer(r.r)
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
