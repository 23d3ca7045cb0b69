package dpdk

/*
#include "shoal_dpdk.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"syscall"

	"github.com/shoal-lb/shoal/internal/packetsock"
)

// Driver is the port's driver name (rte_eth_dev_info.driver_name), e.g.
// "net_tap" or "net_af_packet".
func (p *Port) Driver() (string, error) {
	if err := ready(); err != nil {
		return "", err
	}
	var buf [64]C.char
	if rc := C.shoal_port_driver(C.uint16_t(p.ID), &buf[0], C.size_t(len(buf))); rc < 0 {
		return "", codeError(p.op("rte_eth_dev_info_get"), rc)
	}
	return C.GoString(&buf[0]), nil
}

// RxWaitFD returns a file descriptor that poll(2) reports readable while
// receive queue q of the started port holds packets, for a worker that
// sleeps until traffic comes instead of for a fixed time. The descriptor
// belongs to the driver: do not read, write or close it, and do not use it
// after the port is closed.
//
//   - net_tap, configured with PortConf.RxWait: the queue's tun file
//     descriptor, which DPDK hands out as its receive interrupt
//     (rte_eth_dev_rx_intr_ctl_q_get_fd).
//   - net_af_packet: the PMD's packet socket, the one socket of this
//     process bound to the device's iface (devargs "iface="); poll on a
//     socket with a PACKET_MMAP ring reports the ring's frames. Only
//     queue 0 of a single-queue port: with several queue pairs the sockets
//     cannot be told apart from outside the driver.
//
// Any other driver, or a port set up otherwise, returns an error that
// unwraps to syscall.ENOTSUP and says why; the caller then sleeps for
// fixed times.
func (p *Port) RxWaitFD(q uint16) (int, error) {
	drv, err := p.Driver()
	if err != nil {
		return -1, err
	}
	notSup := func(why string) (int, error) {
		return -1, &Error{Op: p.op(fmt.Sprintf("receive fd of queue %d", q)), Code: int(syscall.ENOTSUP), Msg: why}
	}
	switch drv {
	case "net_tap":
		fd := int(C.shoal_port_rx_intr_fd(C.uint16_t(p.ID), C.uint16_t(q)))
		if fd < 0 {
			return notSup("net_tap has no receive interrupt for this queue (configure the port with RxWait)")
		}
		return fd, nil
	case "net_af_packet":
		if q != 0 {
			return notSup("net_af_packet: only queue 0 of a single-queue port")
		}
		iface := devargValue(p.devargs, "iface")
		if iface == "" {
			return notSup(fmt.Sprintf("net_af_packet devargs %q name no iface", p.devargs))
		}
		fds, err := packetsock.Bound(iface)
		if err != nil {
			return -1, fmt.Errorf("dpdk: %w", err)
		}
		if len(fds) != 1 {
			return notSup(fmt.Sprintf("%d packet sockets of this process are bound to %s, want exactly one (the PMD's, with qpairs=1)", len(fds), iface))
		}
		return fds[0], nil
	}
	return notSup(fmt.Sprintf("driver %s offers no receive file descriptor here", drv))
}

// devargValue returns the value of key in a devargs string
// ("net_af_packet0,iface=eth0,qpairs=1"), or "".
func devargValue(devargs, key string) string {
	for _, kv := range strings.Split(devargs, ",")[1:] {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
