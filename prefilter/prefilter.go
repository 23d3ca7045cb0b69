package prefilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/internal/packetsock"
)

// Words is the wanted bitmap's size in 64-bit words: one bit per bucket.
const Words = 65536 / 64

// Config is what the filter must know of the classifier it stands in
// front of: the same values the worker's classifier gets.
type Config struct {
	Seed       uint32
	VIP        netip.Addr // IPv4
	ClusterMAC [6]byte
	NodeMAC    [6]byte
	// Ports are the VIP ports the cluster serves, only to count a
	// dropped SYN as the worker would (syn_not_ours or syn_port_dropped).
	Ports []uint16
	// DropOutgoing also drops the frames the host itself sends through
	// the device (what replypath.IgnoreOutgoing's classic filter does;
	// a socket holds one filter, so this one takes that job over).
	DropOutgoing bool
}

// Filter is a loaded prefilter: the program, its maps and the mapped
// wanted bitmap. Its methods are safe for concurrent use.
type Filter struct {
	prog                       *ebpf.Program
	wanted, crc, counts, ports *ebpf.Map
	mem                        []byte // the wanted map's memory, mmapped
	mu                         sync.Mutex
	attached                   []int
	closed                     bool
}

// Load creates the maps, fills the CRC table, maps the wanted bitmap (all
// zero: nothing wanted, which is what a worker with no table and no flows
// decides) and loads the program. It needs CAP_BPF (root) and a kernel with
// memory-mappable BPF arrays (Linux 5.5); the error says which step failed.
func Load(cfg Config) (*Filter, error) {
	return load(cfg, false)
}

func load(cfg Config, returnHash bool) (_ *Filter, err error) {
	if !cfg.VIP.Is4() {
		return nil, fmt.Errorf("prefilter: VIP %s is not IPv4", cfg.VIP)
	}
	f := &Filter{}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	f.wanted, err = ebpf.NewMap(&ebpf.MapSpec{Name: "shoal_wanted", Type: ebpf.Array,
		KeySize: 4, ValueSize: Words * 8, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		return nil, fmt.Errorf("prefilter: wanted map (memory-mappable BPF array, Linux 5.5): %w", err)
	}
	f.crc, err = ebpf.NewMap(&ebpf.MapSpec{Name: "shoal_crc32c", Type: ebpf.Array,
		KeySize: 4, ValueSize: 256 * 4, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("prefilter: CRC table map: %w", err)
	}
	tbl := crcTable()
	raw := make([]byte, 256*4)
	for i, v := range tbl {
		binary.NativeEndian.PutUint32(raw[4*i:], v)
	}
	if err := f.crc.Put(uint32(0), raw); err != nil {
		return nil, fmt.Errorf("prefilter: CRC table: %w", err)
	}
	f.counts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "shoal_pf_drops", Type: ebpf.PerCPUArray,
		KeySize: 4, ValueSize: 8, MaxEntries: nCounts})
	if err != nil {
		return nil, fmt.Errorf("prefilter: drop counters: %w", err)
	}
	f.ports, err = ebpf.NewMap(&ebpf.MapSpec{Name: "shoal_pf_ports", Type: ebpf.Array,
		KeySize: 4, ValueSize: 65536 / 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("prefilter: port map: %w", err)
	}
	var words [65536 / 64]uint64
	for _, p := range cfg.Ports {
		words[p>>6] |= 1 << (p & 63)
	}
	pb := make([]byte, 65536/8)
	for i, w := range words {
		binary.NativeEndian.PutUint64(pb[8*i:], w)
	}
	if err := f.ports.Put(uint32(0), pb); err != nil {
		return nil, fmt.Errorf("prefilter: ports: %w", err)
	}
	f.mem, err = unix.Mmap(f.wanted.FD(), 0, Words*8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("prefilter: mapping the wanted bitmap: %w", err)
	}
	p := progParams{seed: cfg.Seed, vip: cfg.VIP.As4(), clusterMAC: cfg.ClusterMAC, nodeMAC: cfg.NodeMAC,
		dropOutgoing: cfg.DropOutgoing, wantedFD: f.wanted.FD(), crcFD: f.crc.FD(), countsFD: f.counts.FD(), portsFD: f.ports.FD(),
		returnHash: returnHash}
	f.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "shoal_prefilter", Type: ebpf.SocketFilter,
		Instructions: program(p), License: "Dual BSD/GPL"})
	if err != nil {
		return nil, fmt.Errorf("prefilter: loading the socket filter: %w", err)
	}
	return f, nil
}

// Wanted is the bitmap the program reads, bit b of word b/64 for bucket
// b: memory outside the Go heap, shared with the kernel, valid until
// Close. The data plane's worker is its only writer (dataplane/wanted.h).
func (f *Filter) Wanted() *[Words]uint64 {
	return (*[Words]uint64)(unsafe.Pointer(&f.mem[0]))
}

// Attach sets the program as the socket filter of fd (SO_ATTACH_BPF),
// replacing any filter it had.
func (f *Filter) Attach(fd int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("prefilter: closed")
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, f.prog.FD()); err != nil {
		return fmt.Errorf("prefilter: SO_ATTACH_BPF on socket %d: %w", fd, err)
	}
	f.attached = append(f.attached, fd)
	return nil
}

// AttachNetdev attaches the program to every AF_PACKET socket of this
// process bound to netdev (the af_packet PMD's) and returns how many.
func (f *Filter) AttachNetdev(netdev string) (int, error) {
	fds, err := packetsock.Bound(netdev)
	if err != nil {
		return 0, fmt.Errorf("prefilter: %w", err)
	}
	if len(fds) == 0 {
		return 0, fmt.Errorf("prefilter: no packet socket of this process is bound to %s", netdev)
	}
	for i, fd := range fds {
		if err := f.Attach(fd); err != nil {
			return i, err
		}
	}
	return len(fds), nil
}

// Detach takes the program off every socket Attach gave it (after a
// partial AttachNetdev, before another filter takes its place), so that
// Close later detaches nothing it does not own.
func (f *Filter) Detach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.detachLocked()...)
}

func (f *Filter) detachLocked() []error {
	var errs []error
	for _, fd := range f.attached {
		// The socket may be gone already (the port closed first): then
		// there is nothing to detach.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_BPF, 0); err != nil && !errors.Is(err, unix.EBADF) && !errors.Is(err, unix.ENOTSOCK) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("prefilter: detaching from socket %d: %w", fd, err))
		}
	}
	f.attached = nil
	return errs
}

// Drops are the frames the filter dropped, summed over CPUs, under the
// names of the worker counters that would have counted them.
type Drops struct {
	// ForeignDropped: TCP segments other than a SYN (the worker's
	// foreign_dropped and fast_dropped).
	ForeignDropped uint64
	// SynNotOurs: SYNs without ACK to a served port.
	SynNotOurs uint64
	// SynPortDropped: SYNs without ACK to a port the cluster does not
	// serve.
	SynPortDropped uint64
}

// Dropped reads the drop counters.
func (f *Filter) Dropped() (Drops, error) {
	var d Drops
	for i, dst := range []*uint64{&d.ForeignDropped, &d.SynNotOurs, &d.SynPortDropped} {
		var per []uint64
		if err := f.counts.Lookup(uint32(i), &per); err != nil {
			return Drops{}, fmt.Errorf("prefilter: reading the drop counters: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return d, nil
}

// Close detaches the program from the sockets Attach gave it and frees
// everything. The wanted bitmap must no longer be written (stop the
// worker first).
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	errs := f.detachLocked()
	if f.mem != nil {
		if err := unix.Munmap(f.mem); err != nil {
			errs = append(errs, err)
		}
		f.mem = nil
	}
	if f.prog != nil {
		f.prog.Close()
	}
	for _, m := range []*ebpf.Map{f.wanted, f.crc, f.counts, f.ports} {
		if m != nil {
			m.Close()
		}
	}
	return errors.Join(errs...)
}

// Keeps runs the loaded program once on frame, as the packet socket hands
// frames to it (from the Ethernet header on), with BPF_PROG_TEST_RUN, and
// says whether the frame would pass; a dropped frame is counted as on the
// socket. It is how the tests compare the program with the worker's C
// classifier, and a way to ask the kernel about one frame.
func (f *Filter) Keeps(frame []byte) (bool, error) {
	ret, err := f.prog.Run(&ebpf.RunOptions{Data: testRunInput(frame)})
	if err != nil {
		return false, fmt.Errorf("prefilter: test run of a %d-byte frame: %w", len(frame), err)
	}
	return ret != 0, nil
}

// testRunInput is frame as BPF_PROG_TEST_RUN must get it to show it to a
// socket filter as a packet socket does: the kernel takes the first 14
// bytes off as an Ethernet header (eth_type_trans) before it runs a
// socket filter, where a packet socket's filter sees the frame from its
// Ethernet header on. So a header of its own goes in front, with an
// EtherType (0x88b5, local experimental) whose payload it does not
// check.
func testRunInput(frame []byte) []byte {
	return append([]byte{0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0x20, 0x88, 0xb5}, frame...)
}
