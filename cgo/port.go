package dpdk

/*
#include "shoal_dpdk.h"
*/
import "C"

import (
	"fmt"
	"net"
	"syscall"
	"unsafe"
)

// Port is an ethdev port.
type Port struct {
	ID   uint16
	Name string // the ethdev name, e.g. "net_tap0" or "0000:03:00.0"

	devargs string
}

// PortConf is the configuration applied by Port.Configure.
type PortConf struct {
	RxQueues, TxQueues uint16   // 0 means 1
	RxDesc, TxDesc     uint16   // descriptors per queue; 0 means 1024; clamped to the driver's limits
	Mempool            *Mempool // mbufs for the receive queues (required when RxQueues > 0)
	MTU                uint16   // 0 keeps the driver's default (1500)
	// RxChecksum asks the device to verify IPv4 and TCP checksums on
	// receive and report them in the mbufs' offload flags, where it can;
	// a device that cannot is configured without (software checks then).
	RxChecksum bool
	// RxWait asks for receive-queue interrupts where the driver's
	// interrupt is the queue's own file descriptor (net_tap), so that
	// RxWaitFD can give it to a worker that sleeps until a packet comes.
	// Other drivers are configured as without it.
	RxWait bool
}

// LinkStatus is a port's link state.
type LinkStatus struct {
	Up         bool
	SpeedMbps  uint32 // 0 when unknown
	FullDuplex bool
}

// PortStats are the basic counters of rte_eth_stats.
type PortStats struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64
	RxMissed             uint64 // dropped by the NIC: no free descriptor
	RxErrors, TxErrors   uint64
	RxNoMbuf             uint64 // receive mbuf allocation failures
}

// OpenPort probes a device and returns its (first) ethdev port. devargs is
// a PCI address ("0000:03:00.0", "03:00.0") or a vdev string
// ("net_tap0,iface=shoal0,mac=02:00:00:00:00:01"), optionally with a bus
// prefix ("pci:", "vdev:"). A device already probed by the EAL (--vdev) is
// adopted. The error names the device and carries DPDK's code and log.
func OpenPort(devargs string) (*Port, error) {
	if err := ready(); err != nil {
		return nil, err
	}
	cs := C.CString(devargs)
	defer C.free(unsafe.Pointer(cs))
	r := C.shoal_port_open(cs)
	if r.res.rc < 0 {
		e := newError(fmt.Sprintf("open port %q", devargs), r.res)
		switch r.res.stage {
		case C.SHOAL_STAGE_PARSE:
			// rte_devargs_parse answers EFAULT ("Bad address") when no
			// bus claims the name, which reads as a memory error.
			e.Msg = "no bus or driver recognizes this device (" + e.Msg + ")"
		case C.SHOAL_STAGE_FIND:
			e.Msg = "device probed but no ethdev port found: " + e.Msg
		}
		return nil, e
	}
	freeLog(r.res.log)
	return &Port{ID: uint16(r.port), Name: C.GoString(&r.name[0]), devargs: devargs}, nil
}

func (p *Port) op(what string) string {
	return fmt.Sprintf("port %d (%s): %s", p.ID, p.Name, what)
}

// Configure applies c: rte_eth_dev_configure (no offloads, no RSS), then
// sets up every receive queue (with c.Mempool) and transmit queue on the
// port's NUMA socket. The port must be stopped.
func (p *Port) Configure(c PortConf) error {
	if err := ready(); err != nil {
		return err
	}
	if c.RxQueues == 0 {
		c.RxQueues = 1
	}
	if c.TxQueues == 0 {
		c.TxQueues = 1
	}
	if c.RxDesc == 0 {
		c.RxDesc = 1024
	}
	if c.TxDesc == 0 {
		c.TxDesc = 1024
	}
	if c.Mempool == nil || c.Mempool.mp == nil {
		return &Error{Op: p.op("configure"), Code: int(syscall.EINVAL), Msg: "PortConf.Mempool is required for receive queues"}
	}
	r := C.shoal_port_configure(C.uint16_t(p.ID), C.uint16_t(c.RxQueues), C.uint16_t(c.TxQueues),
		C.uint16_t(c.RxDesc), C.uint16_t(c.TxDesc), c.Mempool.mp, C.uint16_t(c.MTU), cbool(c.RxChecksum), cbool(c.RxWait))
	if r.rc < 0 {
		what := "rte_eth_dev_configure"
		switch r.stage {
		case C.SHOAL_STAGE_CONFIGURE:
			what = fmt.Sprintf("rte_eth_dev_configure(rxq=%d txq=%d mtu=%d)", c.RxQueues, c.TxQueues, c.MTU)
		case C.SHOAL_STAGE_ADJUST_DESC:
			what = "rte_eth_dev_adjust_nb_rx_tx_desc"
		case C.SHOAL_STAGE_RXQ:
			what = fmt.Sprintf("rte_eth_rx_queue_setup(queue %d, %d descriptors)", r.queue, c.RxDesc)
		case C.SHOAL_STAGE_TXQ:
			what = fmt.Sprintf("rte_eth_tx_queue_setup(queue %d, %d descriptors)", r.queue, c.TxDesc)
		}
		return newError(p.op(what), r)
	}
	freeLog(r.log)
	return nil
}

// Start starts the port (rte_eth_dev_start).
func (p *Port) Start() error {
	if err := ready(); err != nil {
		return err
	}
	r := C.shoal_port_start(C.uint16_t(p.ID))
	if r.rc < 0 {
		return newError(p.op("start"), r)
	}
	freeLog(r.log)
	return nil
}

// Stop stops the port (rte_eth_dev_stop); the configuration is kept.
func (p *Port) Stop() error {
	if err := ready(); err != nil {
		return err
	}
	r := C.shoal_port_stop(C.uint16_t(p.ID))
	if r.rc < 0 {
		return newError(p.op("stop"), r)
	}
	freeLog(r.log)
	return nil
}

// Close stops the port, closes it (rte_eth_dev_close) and removes its
// device (rte_dev_remove) unless the device has other ports, so a net_tap's
// kernel interface disappears and devargs can be opened again. The Port must
// not be used afterwards.
func (p *Port) Close() error {
	if err := ready(); err != nil {
		return err
	}
	r := C.shoal_port_close(C.uint16_t(p.ID))
	if r.rc < 0 {
		what := "close"
		switch r.stage {
		case C.SHOAL_STAGE_INFO:
			what = "close: rte_eth_dev_info_get"
		case C.SHOAL_STAGE_STOP:
			what = "close: rte_eth_dev_stop"
		case C.SHOAL_STAGE_CLOSE:
			what = "close: rte_eth_dev_close"
		case C.SHOAL_STAGE_REMOVE:
			what = "close: rte_dev_remove"
		}
		return newError(p.op(what), r)
	}
	freeLog(r.log)
	return nil
}

// MAC returns the port's MAC address.
func (p *Port) MAC() (net.HardwareAddr, error) {
	if err := ready(); err != nil {
		return nil, err
	}
	m := C.shoal_port_mac(C.uint16_t(p.ID))
	if m.rc != 0 {
		return nil, codeError(p.op("rte_eth_macaddr_get"), m.rc)
	}
	return net.HardwareAddr(C.GoBytes(unsafe.Pointer(&m.addr[0]), 6)), nil
}

// SetPromiscuous turns promiscuous mode on or off. Drivers without it return
// an error that unwraps to syscall.ENOTSUP.
func (p *Port) SetPromiscuous(on bool) error {
	if err := ready(); err != nil {
		return err
	}
	if rc := C.shoal_port_promisc(C.uint16_t(p.ID), cbool(on)); rc != 0 {
		return codeError(p.op(fmt.Sprintf("set promiscuous %v", on)), rc)
	}
	return nil
}

// SetAllMulticast turns all-multicast reception on or off.
func (p *Port) SetAllMulticast(on bool) error {
	if err := ready(); err != nil {
		return err
	}
	if rc := C.shoal_port_allmulti(C.uint16_t(p.ID), cbool(on)); rc != 0 {
		return codeError(p.op(fmt.Sprintf("set all-multicast %v", on)), rc)
	}
	return nil
}

// Link returns the link state without waiting (rte_eth_link_get_nowait).
func (p *Port) Link() (LinkStatus, error) {
	if err := ready(); err != nil {
		return LinkStatus{}, err
	}
	l := C.shoal_port_link(C.uint16_t(p.ID))
	if l.rc != 0 {
		return LinkStatus{}, codeError(p.op("rte_eth_link_get_nowait"), l.rc)
	}
	return LinkStatus{Up: l.up != 0, SpeedMbps: uint32(l.speed), FullDuplex: l.full_duplex != 0}, nil
}

// Stats returns the port's basic counters (rte_eth_stats_get).
func (p *Port) Stats() (PortStats, error) {
	if err := ready(); err != nil {
		return PortStats{}, err
	}
	s := C.shoal_port_stats(C.uint16_t(p.ID))
	if s.rc != 0 {
		return PortStats{}, codeError(p.op("rte_eth_stats_get"), s.rc)
	}
	return PortStats{
		RxPackets: uint64(s.ipackets), TxPackets: uint64(s.opackets),
		RxBytes: uint64(s.ibytes), TxBytes: uint64(s.obytes),
		RxMissed: uint64(s.imissed), RxErrors: uint64(s.ierrors),
		TxErrors: uint64(s.oerrors), RxNoMbuf: uint64(s.rx_nombuf),
	}, nil
}

// XStats returns the driver's extended counters by name
// (rte_eth_xstats_get_names + rte_eth_xstats_get).
func (p *Port) XStats() (map[string]uint64, error) {
	if err := ready(); err != nil {
		return nil, err
	}
	x := C.shoal_port_xstats(C.uint16_t(p.ID))
	defer C.shoal_xstats_free(x)
	if x.rc != 0 {
		return nil, codeError(p.op("rte_eth_xstats_get"), x.rc)
	}
	n := int(x.n)
	m := make(map[string]uint64, n)
	if n == 0 {
		return m, nil
	}
	names := unsafe.Slice((*byte)(unsafe.Pointer(x.names)), n*C.SHOAL_XSTAT_NAME_LEN)
	vals := unsafe.Slice((*uint64)(unsafe.Pointer(x.values)), n)
	for i := 0; i < n; i++ {
		rec := names[i*C.SHOAL_XSTAT_NAME_LEN : (i+1)*C.SHOAL_XSTAT_NAME_LEN]
		end := 0
		for end < len(rec) && rec[end] != 0 {
			end++
		}
		m[string(rec[:end])] = vals[i]
	}
	return m, nil
}
