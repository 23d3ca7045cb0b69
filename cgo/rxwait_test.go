package dpdk

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRxWaitFDTap: a tap configured with RxWait gives a file descriptor
// that poll reports idle while its queue is empty and readable once the
// kernel sends a frame into the tap, and the frame is then there to read;
// without RxWait, and on a device with no descriptor (net_null), the answer
// is ENOTSUP.
func TestRxWaitFDTap(t *testing.T) {
	needEAL(t)
	const ifname = "shoaltest1"
	p, err := OpenPort("net_tap1,iface=" + ifname + ",mac=02:00:5e:00:53:02")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mp, err := NewPktMempool("rxwait_pool", 1023, 32, DefaultDataRoom)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Free()
	if drv, err := p.Driver(); err != nil || drv != "net_tap" {
		t.Fatalf("Driver = %q, %v; want net_tap", drv, err)
	}
	// No IPv6 on the test link: its solicitations would fill the queue.
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("1"), 0o644)
	if err := p.Configure(PortConf{Mempool: mp, RxDesc: 64, TxDesc: 64}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RxWaitFD(0); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("RxWaitFD without RxWait: %v, want ENOTSUP", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Configure(PortConf{Mempool: mp, RxDesc: 64, TxDesc: 64, RxWait: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	fd, err := p.RxWaitFD(0)
	if err != nil {
		t.Fatalf("RxWaitFD: %v", err)
	}
	// The kernel's own chatter on a new link (IPv6 solicitations) may
	// still arrive: drain until the queue stays empty for 20 ms.
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for i := 0; ; i++ {
		drain(p)
		n, err := unix.Poll(pfd, 20)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if i == 50 {
			t.Fatalf("poll reports the queue readable after draining it 50 times (revents %#x)", pfd[0].Revents)
		}
	}
	// The kernel sends a frame out of the tap interface: the PMD's queue.
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	frame := make([]byte, 60)
	copy(frame, []byte{0x02, 0, 0x5e, 0, 0x53, 0x02, 0x02, 0, 0x5e, 0, 0x53, 0x09, 0x88, 0xb5})
	if err := unix.Sendto(s, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n, err := unix.Poll(pfd, 1000); err != nil || n != 1 || pfd[0].Revents&unix.POLLIN == 0 {
		t.Fatalf("poll after a frame: %d, %v (revents %#x); want readable", n, err, pfd[0].Revents)
	}
	t.Logf("readable after %v", time.Since(start))
	if got := drain(p); got == 0 {
		n, _ := unix.Poll(pfd, 0)
		st, _ := p.Stats()
		t.Errorf("poll said readable but the queue held no frame (poll now %d, stats %+v)", n, st)
	}
}

// TestRxWaitFDNull: a device without a receive descriptor says so.
func TestRxWaitFDNull(t *testing.T) {
	needEAL(t)
	p, err := OpenPort("net_null2")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.RxWaitFD(0); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("RxWaitFD on net_null: %v, want ENOTSUP", err)
	}
}

// drain reads queue 0 until it is empty and returns how many frames it held.
func drain(p *Port) int {
	n := 0
	for i := 0; i < 100; i++ {
		k := rxDrop(p)
		n += k
		if k == 0 && i > 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return n
}

func TestDevargValue(t *testing.T) {
	for _, c := range []struct{ devargs, key, want string }{
		{"net_af_packet0,iface=eth0", "iface", "eth0"},
		{"net_af_packet0,qpairs=1,iface=veth1", "iface", "veth1"},
		{"net_af_packet0", "iface", ""},
		{"net_af_packet0,ifacex=eth0", "iface", ""},
	} {
		if got := devargValue(c.devargs, c.key); got != c.want {
			t.Errorf("devargValue(%q, %q) = %q, want %q", c.devargs, c.key, got, c.want)
		}
	}
}
