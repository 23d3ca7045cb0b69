package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// The fixture set: frames built with gopacket, each with the verdict and the
// frame both classifiers must produce. One table drives the unit tests of
// both implementations, the differential test and the fuzz target's seeds.

var (
	fxVIP        = netip.MustParseAddr("198.18.0.100")
	fxClient     = netip.MustParseAddr("198.18.0.10")
	fxNodeIP     = netip.MustParseAddr("198.18.0.101")
	fxClusterMAC = net.HardwareAddr{0x01, 0x00, 0x5e, 0x75, 0xc9, 0x3e}
	fxNodeMAC    = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	fxClientMAC  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}
	fxOtherMAC   = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x77}
	fxBroadcast  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

const fxSeed = 0x5eed

func fxConfig() ClassifierConfig {
	return ClassifierConfig{
		VIP: fxVIP, Seed: fxSeed, ClusterMAC: fxClusterMAC, NodeMAC: fxNodeMAC,
		MaxFlows: 1024, MaxHalfOpen: 256,
		HalfOpen: 10 * time.Second, Idle: 900 * time.Second, Closing: 30 * time.Second,
		Ports: []uint16{80, 443},
	}
}

// fxOwnership owns the even buckets.
func fxOwnership() *Ownership {
	var o Ownership
	for b := 0; b < 65536; b += 2 {
		o.Set(uint16(b))
	}
	return &o
}

// portIn returns the n-th client port whose bucket is owned (or not) under
// fxOwnership.
func portIn(owned bool, n int) uint16 {
	for p := 1024; p < 65536; p++ {
		b := Bucket(ConnValue(fxSeed, fxClient, fxVIP, uint16(p), 80))
		if (b%2 == 0) == owned {
			if n == 0 {
				return uint16(p)
			}
			n--
		}
	}
	panic("no port")
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

type seg struct {
	dstMAC, srcMAC net.HardwareAddr
	src, dst       netip.Addr
	sport, dport   uint16
	syn, ack, fin  bool
	rst            bool
	seq, ackNum    uint32
	payload        []byte
	options        []layers.TCPOption
}

func tcpFrame(t testing.TB, s seg) []byte {
	eth := &layers.Ethernet{SrcMAC: s.srcMAC, DstMAC: s.dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(), Flags: layers.IPv4DontFragment}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
		SYN: s.syn, ACK: s.ack, FIN: s.fin, RST: s.rst, Seq: s.seq, Ack: s.ackNum,
		Window: 64240, Options: s.options}
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, tcp, gopacket.Payload(s.payload))
}

// fromClient is a client segment to the VIP, sent to the cluster MAC.
func fromClient(sport uint16) seg {
	return seg{dstMAC: fxClusterMAC, srcMAC: fxClientMAC, src: fxClient, dst: fxVIP, sport: sport, dport: 80}
}

// fromKernel is this node's kernel answering the client through the tap.
func fromKernel(sport uint16) seg {
	return seg{dstMAC: fxClientMAC, srcMAC: fxNodeMAC, src: fxVIP, dst: fxClient, sport: 80, dport: sport}
}

func withMAC(f []byte, dst net.HardwareAddr) []byte {
	g := append([]byte(nil), f...)
	copy(g, dst)
	return g
}

func arpFrame(t testing.TB, dstMAC, srcMAC net.HardwareAddr, op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: op,
		SourceHwAddress: sha, SourceProtAddress: spa.AsSlice(), DstHwAddress: tha, DstProtAddress: tpa.AsSlice()}
	return serialize(t, eth, arp)
}

// icmpFrame is an ICMP message from src to the VIP; rest is the 4 bytes
// after the checksum, quoted what follows.
func icmpFrame(t testing.TB, src netip.Addr, typ, code uint8, rest uint32, quoted []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: fxVIP.AsSlice()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: uint16(rest >> 16), Seq: uint16(rest)}
	return serialize(t, &layers.Ethernet{SrcMAC: fxClientMAC, DstMAC: fxClusterMAC, EthernetType: layers.EthernetTypeIPv4},
		ip, icmp, gopacket.Payload(quoted))
}

// quote is the start of a packet we sent (VIP:80 to the client) as an ICMP
// error quotes it: IPv4 header and 8 bytes of transport header.
func quote(t testing.TB, proto layers.IPProtocol, dport uint16, seq uint32) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: fxVIP.AsSlice(), DstIP: fxClient.AsSlice(), Flags: layers.IPv4DontFragment}
	var l4 [8]byte
	binary.BigEndian.PutUint16(l4[0:], 80)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint32(l4[4:], seq)
	b := serialize(t, ip, gopacket.Payload(make([]byte, 1400)))
	return append(b[:20:20], l4[:]...)
}

// clientIn returns the n-th client address in 198.18.0.0/24 whose echo
// bucket (client, VIP, 0, 0) is owned (or not) under fxOwnership.
func clientIn(owned bool, n int) netip.Addr {
	for i := 1; i < 255; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(i)})
		if (Bucket(ConnValue(fxSeed, a, fxVIP, 0, 0))%2 == 0) == owned {
			if n == 0 {
				return a
			}
			n--
		}
	}
	panic("no address")
}

// step is one frame through one classifier direction.
type step struct {
	tap     bool
	at      uint32 // ms on the worker clock
	in      []byte
	verdict Verdict
	out     []byte // nil: the frame must come out unchanged
}

type fixture struct {
	name   string
	cfg    func(*ClassifierConfig)
	steps  func(t testing.TB) []step
	expect func(t testing.TB, c Counters, f FlowCounts)
}

func rstFor(t testing.TB, s seg) []byte {
	s.dstMAC = fxNodeMAC
	s.syn, s.ack, s.fin, s.rst = false, false, false, true
	s.ackNum = 0
	s.payload = nil
	eth := &layers.Ethernet{SrcMAC: s.srcMAC, DstMAC: s.dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(), Flags: layers.IPv4DontFragment}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
		RST: true, Seq: s.seq, Window: 0, Options: s.options}
	tcp.SetNetworkLayerForChecksum(ip)
	f := serialize(t, eth, ip, tcp)
	// gopacket pads to the Ethernet minimum; the classifier's RST is cut
	// at the IP total length.
	return f[:14+(int(f[16])<<8|int(f[17]))]
}

// clientRSTFor is the RST the client would send for our kernel's SYN-ACK:
// what the classifier answers a withdrawn flow's SYN-ACK with.
func clientRSTFor(t testing.TB, synack seg) []byte {
	rst := seg{dstMAC: fxNodeMAC, srcMAC: synack.dstMAC, src: synack.dst, dst: synack.src,
		sport: synack.dport, dport: synack.sport, rst: true, seq: synack.ackNum}
	eth := &layers.Ethernet{SrcMAC: rst.srcMAC, DstMAC: rst.dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: rst.src.AsSlice(), DstIP: rst.dst.AsSlice(), Flags: layers.IPv4DontFragment}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(rst.sport), DstPort: layers.TCPPort(rst.dport), RST: true, Seq: rst.seq}
	tcp.SetNetworkLayerForChecksum(ip)
	f := serialize(t, eth, ip, tcp)
	return f[:14+40]
}

func eq(t testing.TB, what string, got, want uint64) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

// conn builds the segments of one connection of an owned client port:
// client ISN 100, our ISN 7000.
type conn struct {
	t    testing.TB
	port uint16
}

func newConn(t testing.TB, n int) conn { return conn{t, portIn(true, n)} }

// c is a client segment with ACK, seq and ack given.
func (c conn) c(seq, ack uint32, flags string, payload int) seg {
	s := fromClient(c.port)
	s.seq, s.ackNum, s.ack = seq, ack, true
	s.payload = make([]byte, payload)
	for _, f := range flags {
		switch f {
		case 'F':
			s.fin = true
		case 'R':
			s.rst = true
		case 'S':
			s.syn = true
		case '-':
			s.ack = false
		}
	}
	return s
}

// k is our kernel's segment with ACK, seq and ack given.
func (c conn) k(seq, ack uint32, flags string, payload int) seg {
	s := c.c(seq, ack, flags, payload)
	k := fromKernel(c.port)
	k.seq, k.ackNum, k.ack, k.fin, k.rst, k.syn, k.payload = s.seq, s.ackNum, s.ack, s.fin, s.rst, s.syn, s.payload
	return k
}

// rx is a client frame the classifier hands to the kernel (MAC rewritten).
func (c conn) rx(at uint32, s seg) step {
	f := tcpFrame(c.t, s)
	return step{at: at, in: f, verdict: ToKernel, out: withMAC(f, fxNodeMAC)}
}

// drop is a client frame the classifier drops.
func (c conn) drop(at uint32, s seg) step {
	return step{at: at, in: tcpFrame(c.t, s), verdict: Drop}
}

// tx is a frame of our kernel going out unchanged.
func (c conn) tx(at uint32, s seg) step {
	return step{tap: true, at: at, in: tcpFrame(c.t, s), verdict: ToNIC}
}

// handshake: SYN at 0, SYN-ACK at 1, ACK at 2; established.
func (c conn) handshake() []step {
	syn := fromClient(c.port)
	syn.syn, syn.seq = true, 100
	return []step{c.rx(0, syn), c.tx(1, c.k(7000, 101, "S", 0)), c.rx(2, c.c(101, 7001, "", 0))}
}

var fixtures = []fixture{
	{
		name: "arp request for the VIP is answered with the cluster MAC",
		steps: func(t testing.TB) []step {
			req := arpFrame(t, fxBroadcast, fxClientMAC, 1, fxClientMAC, fxClient, net.HardwareAddr{0, 0, 0, 0, 0, 0}, fxVIP)
			rep := arpFrame(t, fxClientMAC, fxNodeMAC, 2, fxClusterMAC, fxVIP, fxClientMAC, fxClient)
			return []step{{in: req, verdict: ToNIC, out: rep}}
		},
		expect: func(t testing.TB, c Counters, _ FlowCounts) { eq(t, "arp_replied", c.ARPReplied, 1) },
	},
	{
		name: "arp for the node address goes to the kernel",
		steps: func(t testing.TB) []step {
			req := arpFrame(t, fxBroadcast, fxClientMAC, 1, fxClientMAC, fxClient, net.HardwareAddr{0, 0, 0, 0, 0, 0}, fxNodeIP)
			rep := arpFrame(t, fxNodeMAC, fxClientMAC, 2, fxClientMAC, fxClient, fxNodeMAC, fxNodeIP)
			return []step{{in: req, verdict: ToKernel}, {in: rep, verdict: ToKernel}}
		},
		expect: func(t testing.TB, c Counters, _ FlowCounts) { eq(t, "to_kernel", c.ToKernel, 2) },
	},
	{
		name: "owned SYN, handshake, data and close",
		steps: func(t testing.TB) []step {
			p := portIn(true, 0)
			c := fromClient(p)
			k := fromKernel(p)
			syn := c
			syn.syn, syn.seq = true, 100
			synack := k
			synack.syn, synack.ack, synack.seq, synack.ackNum = true, true, 7000, 101
			ack := c
			ack.ack, ack.seq, ack.ackNum = true, 101, 7001
			data := ack
			data.payload = []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			reply := k
			reply.ack, reply.seq, reply.ackNum, reply.payload = true, 7001, 128, []byte("HTTP/1.1 200 OK\r\n\r\n")
			fin := ack
			fin.fin, fin.seq = true, 128
			f := func(s seg) []byte { return tcpFrame(t, s) }
			return []step{
				{in: f(syn), verdict: ToKernel, out: withMAC(f(syn), fxNodeMAC)},
				{tap: true, at: 1, in: f(synack), verdict: ToNIC},
				{at: 2, in: f(ack), verdict: ToKernel, out: withMAC(f(ack), fxNodeMAC)},
				{at: 3, in: f(data), verdict: ToKernel, out: withMAC(f(data), fxNodeMAC)},
				{tap: true, at: 4, in: f(reply), verdict: ToNIC},
				{at: 5, in: f(fin), verdict: ToKernel, out: withMAC(f(fin), fxNodeMAC)},
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "syn_accepted", c.SynAccepted, 1)
			eq(t, "closing flows", fl.Closing, 1)
			eq(t, "tx", c.TX, 2)
		},
	},
	{
		name: "SYN in another node's bucket is dropped",
		steps: func(t testing.TB) []step {
			s := fromClient(portIn(false, 0))
			s.syn = true
			return []step{{in: tcpFrame(t, s), verdict: Drop}}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "syn_not_ours", c.SynNotOurs, 1)
			eq(t, "flows", fl.SynRcvd, 0)
		},
	},
	{
		name: "SYN to a port the cluster does not serve is dropped",
		steps: func(t testing.TB) []step {
			s := fromClient(portIn(true, 6))
			s.syn, s.dport = true, 8080
			tls := fromClient(2000)
			for Bucket(ConnValue(fxSeed, fxClient, fxVIP, tls.sport, 443))%2 != 0 {
				tls.sport++
			}
			tls.syn, tls.dport = true, 443
			return []step{
				{in: tcpFrame(t, s), verdict: Drop},
				{in: tcpFrame(t, tls), verdict: ToKernel, out: withMAC(tcpFrame(t, tls), fxNodeMAC)},
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "syn_port_dropped", c.SynPortDropped, 1)
			eq(t, "syn_accepted", c.SynAccepted, 1)
		},
	},
	{
		name: "stray ACK for an unknown flow is dropped without a probe",
		steps: func(t testing.TB) []step {
			s := fromClient(portIn(true, 3))
			s.ack, s.seq, s.ackNum = true, 5, 6
			return []step{{in: tcpFrame(t, s), verdict: Drop}}
		},
		expect: func(t testing.TB, c Counters, _ FlowCounts) {
			eq(t, "foreign_dropped", c.ForeignDropped, 1)
			eq(t, "fast_dropped", c.FastDropped, 1)
		},
	},
	{
		name: "overlap loser: the client acknowledges another node's SYN-ACK",
		steps: func(t testing.TB) []step {
			p := portIn(true, 1)
			c := fromClient(p)
			k := fromKernel(p)
			syn := c
			syn.syn, syn.seq = true, 100
			syn.options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 180}}}
			synack := k
			synack.syn, synack.ack, synack.seq, synack.ackNum = true, true, 5000, 101
			ack := c
			ack.ack, ack.seq, ack.ackNum = true, 101, 90001 // the winner's ISN+1
			ack.options = []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0, 9, 0, 0, 0, 7}}}
			data := ack
			data.payload = []byte("GET / HTTP/1.1\r\n\r\n")
			f := func(s seg) []byte { return tcpFrame(t, s) }
			return []step{
				{in: f(syn), verdict: ToKernel, out: withMAC(f(syn), fxNodeMAC)},
				{tap: true, at: 1, in: f(synack), verdict: ToNIC},
				{at: 2, in: f(ack), verdict: ToKernel, out: rstFor(t, ack)},
				{tap: true, at: 1000, in: f(synack), verdict: ToKernel, out: clientRSTFor(t, synack)},
				{at: 3, in: f(data), verdict: Drop},
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "overlap_withdrawn", c.OverlapWithdrawn, 1)
			eq(t, "kernel_withdrawn_dropped", c.KernelWithdrawnDropped, 1)
			eq(t, "to_kernel (SYN, RST from the ACK, RST for the SYN-ACK)", c.ToKernel, 3)
			eq(t, "withdrawn flows", fl.Withdrawn, 1)
		},
	},
	{
		name: "slow overlap loser: the client's ACK arrives before our SYN-ACK",
		steps: func(t testing.TB) []step {
			p := portIn(true, 2)
			syn := fromClient(p)
			syn.syn, syn.seq = true, 100
			ack := fromClient(p)
			ack.ack, ack.seq, ack.ackNum = true, 101, 4242
			late := fromKernel(p)
			late.syn, late.ack, late.seq, late.ackNum = true, true, 777, 101
			return []step{
				{in: tcpFrame(t, syn), verdict: ToKernel, out: withMAC(tcpFrame(t, syn), fxNodeMAC)},
				{at: 1, in: tcpFrame(t, ack), verdict: ToKernel, out: rstFor(t, ack)},
				{tap: true, at: 2, in: tcpFrame(t, late), verdict: ToKernel, out: clientRSTFor(t, late)},
			}
		},
		expect: func(t testing.TB, c Counters, _ FlowCounts) {
			eq(t, "overlap_withdrawn", c.OverlapWithdrawn, 1)
		},
	},
	{
		name: "malformed frames are dropped and counted",
		steps: func(t testing.TB) []step {
			p := portIn(true, 4)
			syn := fromClient(p)
			syn.syn = true
			good := tcpFrame(t, syn)
			var out []step
			add := func(f []byte) { out = append(out, step{in: f, verdict: Drop}) }
			add(good[:10])                      // shorter than Ethernet
			add(good[:30])                      // truncated IPv4 header
			add(good[:14+20+10])                // truncated TCP header
			opt := append([]byte(nil), good...) // IHL 6: IP options
			opt[14] = 0x46
			add(opt)
			frag := append([]byte(nil), good...) // more fragments
			frag[14+6] |= 0x20
			add(frag)
			off := append([]byte(nil), good...) // fragment offset
			off[14+7] = 3
			add(off)
			doff := append([]byte(nil), good...) // TCP data offset 4
			doff[14+20+12] = 0x40
			add(doff)
			long := append([]byte(nil), good...) // total length past the frame
			long[14+2], long[14+3] = 0x05, 0xdc
			add(long)
			synfin := syn
			synfin.fin = true
			add(tcpFrame(t, synfin))
			// A VLAN-tagged frame.
			add(serialize(t, &layers.Ethernet{SrcMAC: fxClientMAC, DstMAC: fxClusterMAC, EthernetType: layers.EthernetTypeDot1Q},
				&layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4},
				&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: fxClient.AsSlice(), DstIP: fxVIP.AsSlice()},
				gopacket.Payload(make([]byte, 20))))
			// UDP to the VIP, and a short ICMP.
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: fxClient.AsSlice(), DstIP: fxVIP.AsSlice()}
			udp := &layers.UDP{SrcPort: 5000, DstPort: 53}
			udp.SetNetworkLayerForChecksum(ip)
			add(serialize(t, &layers.Ethernet{SrcMAC: fxClientMAC, DstMAC: fxClusterMAC, EthernetType: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload([]byte("x"))))
			// ICMP shorter than its 8-byte header.
			ip2 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: fxClient.AsSlice(), DstIP: fxVIP.AsSlice()}
			add(serialize(t, &layers.Ethernet{SrcMAC: fxClientMAC, DstMAC: fxClusterMAC, EthernetType: layers.EthernetTypeIPv4}, ip2,
				gopacket.Payload([]byte("ping"))))
			// A truncated ARP.
			arp := arpFrame(t, fxBroadcast, fxClientMAC, 1, fxClientMAC, fxClient, net.HardwareAddr{0, 0, 0, 0, 0, 0}, fxVIP)
			add(arp[:30])
			return out
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "malformed_dropped", c.MalformedDropped, 13)
			eq(t, "flows", fl.SynRcvd, 0)
		},
	},
	{
		name: "the kernel never claims the VIP in ARP",
		steps: func(t testing.TB) []step {
			claim := arpFrame(t, fxBroadcast, fxNodeMAC, 1, fxNodeMAC, fxVIP, net.HardwareAddr{0, 0, 0, 0, 0, 0}, fxClient)
			ok := arpFrame(t, fxBroadcast, fxNodeMAC, 1, fxNodeMAC, fxNodeIP, net.HardwareAddr{0, 0, 0, 0, 0, 0}, fxClient)
			return []step{{tap: true, in: claim, verdict: Drop}, {tap: true, in: ok, verdict: ToNIC}}
		},
		expect: func(t testing.TB, c Counters, _ FlowCounts) { eq(t, "kernel_arp_dropped", c.KernelARPDropped, 1) },
	},
	{
		name: "frames for other stations are dropped",
		steps: func(t testing.TB) []step {
			s := seg{dstMAC: fxOtherMAC, srcMAC: fxClientMAC, src: fxClient, dst: netip.MustParseAddr("198.18.0.102"), sport: 5555, dport: 7946, ack: true}
			v := fromClient(portIn(true, 5))
			v.dstMAC, v.syn = fxOtherMAC, true
			mine := s
			mine.dstMAC, mine.dst = fxNodeMAC, fxNodeIP
			return []step{
				{in: tcpFrame(t, s), verdict: Drop},
				{in: tcpFrame(t, v), verdict: Drop},
				{in: tcpFrame(t, mine), verdict: ToKernel},
			}
		},
		expect: func(t testing.TB, c Counters, _ FlowCounts) { eq(t, "other_dropped", c.OtherDropped, 2) },
	},
	{
		name: "half-open bound and full table drop new SYNs",
		cfg:  func(c *ClassifierConfig) { c.MaxFlows, c.MaxHalfOpen = 3, 2 },
		steps: func(t testing.TB) []step {
			var out []step
			for i := 0; i < 3; i++ {
				s := fromClient(portIn(true, 10+i))
				s.syn = true
				v := ToKernel
				if i == 2 {
					v = Drop
				}
				out = append(out, step{in: tcpFrame(t, s), verdict: v, out: map[bool][]byte{true: withMAC(tcpFrame(t, s), fxNodeMAC)}[v == ToKernel]})
			}
			// Establish the first so a half-open slot frees, then fill the table.
			p := portIn(true, 10)
			sa := fromKernel(p)
			sa.syn, sa.ack, sa.seq = true, true, 10
			ack := fromClient(p)
			ack.ack, ack.seq, ack.ackNum = true, 1, 11
			out = append(out, step{tap: true, in: tcpFrame(t, sa), verdict: ToNIC},
				step{in: tcpFrame(t, ack), verdict: ToKernel, out: withMAC(tcpFrame(t, ack), fxNodeMAC)})
			s := fromClient(portIn(true, 13))
			s.syn = true
			out = append(out, step{in: tcpFrame(t, s), verdict: ToKernel, out: withMAC(tcpFrame(t, s), fxNodeMAC)})
			s2 := fromClient(portIn(true, 14))
			s2.syn = true
			out = append(out, step{in: tcpFrame(t, s2), verdict: Drop})
			return out
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "half_open_dropped", c.HalfOpenDropped, 1)
			eq(t, "table_full_dropped", c.TableFullDropped, 1)
			eq(t, "established", fl.Established, 1)
		},
	},
	{
		name: "half-open flows expire; late ACKs are foreign",
		steps: func(t testing.TB) []step {
			p := portIn(true, 20)
			syn := fromClient(p)
			syn.syn = true
			ack := fromClient(p)
			ack.ack, ack.seq, ack.ackNum = true, 1, 1
			return []step{
				{in: tcpFrame(t, syn), verdict: ToKernel, out: withMAC(tcpFrame(t, syn), fxNodeMAC)},
				{at: 10_000, in: tcpFrame(t, ack), verdict: Drop},
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "expired", c.Expired, 1)
			eq(t, "syn_rcvd", fl.SynRcvd, 0)
		},
	},
	{
		name: "a new SYN on a closing tuple is decided afresh",
		steps: func(t testing.TB) []step {
			p := portIn(true, 30)
			syn := fromClient(p)
			syn.syn = true
			rst := fromClient(p)
			rst.rst, rst.seq = true, 1
			return []step{
				{in: tcpFrame(t, syn), verdict: ToKernel, out: withMAC(tcpFrame(t, syn), fxNodeMAC)},
				{at: 1, in: tcpFrame(t, rst), verdict: ToKernel, out: withMAC(tcpFrame(t, rst), fxNodeMAC)},
				{at: 2, in: tcpFrame(t, syn), verdict: ToKernel, out: withMAC(tcpFrame(t, syn), fxNodeMAC)},
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "syn_accepted", c.SynAccepted, 2)
			eq(t, "syn_rcvd", fl.SynRcvd, 1)
			eq(t, "closing", fl.Closing, 0)
		},
	},
	{
		name: "half-close: the client's FIN, then a download longer than the closing timer",
		steps: func(t testing.TB) []step {
			c := newConn(t, 40)
			return append(c.handshake(),
				c.rx(3, c.c(101, 7001, "", 20)),        // the request
				c.rx(5, c.c(121, 7001, "F", 0)),        // shutdown(SHUT_WR)
				c.tx(10, c.k(7001, 122, "", 100)),      // data, acknowledging the FIN
				c.rx(20_000, c.c(122, 7101, "", 0)),    // the client reads slowly
				c.tx(45_000, c.k(7101, 122, "", 100)),  // past the closing timer
				c.rx(50_000, c.c(100, 0, "S-", 0)),     // a SYN on the live tuple: the kernel's
				c.rx(70_000, c.c(122, 7201, "", 0)),    // still delivered
				c.tx(70_010, c.k(7201, 122, "F", 0)),   // our FIN
				c.rx(70_020, c.c(122, 7202, "", 0)),    // acknowledged: finished
				c.rx(100_019, c.c(122, 7202, "", 0)),   // a straggler refreshes the closing timer
				c.drop(130_020, c.c(122, 7202, "", 0)), // then it ends
			)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "expired", c.Expired, 1)
			eq(t, "closing", fl.Closing, 0)
			eq(t, "syn_accepted", c.SynAccepted, 1)
		},
	},
	{
		name: "server closes first; the client's in-order FIN finishes the flow",
		steps: func(t testing.TB) []step {
			c := newConn(t, 41)
			return append(c.handshake(),
				c.tx(10, c.k(7001, 101, "F", 0)),
				c.rx(20, c.c(101, 7002, "", 0)),
				c.rx(30, c.c(101, 7002, "F", 0)),
				c.rx(30_029, c.c(101, 7002, "F", 0)),
				c.drop(60_030, c.c(101, 7002, "", 0)),
			)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "expired", c.Expired, 1)
			eq(t, "closing", fl.Closing, 0)
		},
	},
	{
		name: "a half-closed flow waits for its second FIN as long as an established one",
		steps: func(t testing.TB) []step {
			c := newConn(t, 42)
			return append(c.handshake(),
				c.rx(10, c.c(101, 7001, "F", 0)),
				c.tx(20, c.k(7001, 102, "", 0)),
				c.rx(899_000, c.c(102, 7001, "", 0)),
			)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "closing", fl.Closing, 1)
			eq(t, "expired", c.Expired, 0)
		},
	},
	{
		name: "a FIN far from the client's sequence numbers is not recorded",
		steps: func(t testing.TB) []step {
			c := newConn(t, 43)
			return append(c.handshake(),
				c.rx(10, c.c(101+1<<30, 7001, "F", 0)),
				c.rx(20, c.c(101, 7001, "", 0)),
			)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "established", fl.Established, 1)
		},
	},
	{
		name: "a blind RST far outside the window changes nothing",
		steps: func(t testing.TB) []step {
			c := newConn(t, 44)
			return append(c.handshake(),
				c.rx(3, c.c(101, 7001, "", 20)),
				c.tx(4, c.k(7001, 121, "", 1000)),
				c.rx(5, c.c(121+1<<30, 0, "R-", 0)), // delivered: the kernel ignores it too
				c.rx(40_000, c.c(121, 8001, "", 0)),
			)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "rst_ignored", c.RSTIgnored, 1)
			eq(t, "established", fl.Established, 1)
		},
	},
	{
		name: "a RST at the client's next sequence number ends the flow",
		steps: func(t testing.TB) []step {
			c := newConn(t, 45)
			return append(c.handshake(),
				c.rx(3, c.c(101, 7001, "", 20)),
				c.rx(5, c.c(121, 0, "R-", 0)),
				c.drop(30_005, c.c(121, 7001, "", 0)),
			)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "rst_ignored", c.RSTIgnored, 0)
			eq(t, "expired", c.Expired, 1)
		},
	},
	{
		name: "a RST our kernel did not take: its next segment revives the flow",
		steps: func(t testing.TB) []step {
			c := newConn(t, 46)
			return append(c.handshake(),
				c.rx(3, c.c(101, 7001, "", 20)),
				c.rx(5, c.c(111, 0, "R-", 0)),       // in the window, not exact
				c.tx(6, c.k(7001, 121, "", 0)),      // the challenge ACK
				c.rx(40_000, c.c(121, 7001, "", 0)), // past the closing timer
			)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "established", fl.Established, 1)
			eq(t, "closing", fl.Closing, 0)
		},
	},
	{
		name: "in SYN_RCVD a RST counts only within our SYN-ACK's window",
		steps: func(t testing.TB) []step {
			c := newConn(t, 47)
			syn := fromClient(c.port)
			syn.syn, syn.seq = true, 100
			return []step{
				c.rx(0, syn),
				c.tx(1, c.k(7000, 101, "S", 0)),
				c.rx(2, c.c(101+70000, 0, "R-", 0)),
				c.rx(3, c.c(101, 7001, "", 0)),
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "rst_ignored", c.RSTIgnored, 1)
			eq(t, "established", fl.Established, 1)
		},
	},
	{
		name: "a stray ACK during an open handshake withdraws nothing",
		steps: func(t testing.TB) []step {
			c := newConn(t, 48)
			syn := fromClient(c.port)
			syn.syn, syn.seq = true, 100
			old := fromClient(c.port) // a segment of the tuple's previous use
			old.ack, old.seq, old.ackNum, old.payload = true, 0xfffff000, 3, []byte("x")
			return []step{
				c.rx(0, syn),
				c.tx(1, c.k(7000, 101, "S", 0)),
				c.drop(500, c.c(101+1<<31, 0x5eed5eed, "", 0)),
				c.drop(600, old),
				c.rx(3000, c.c(101, 7001, "", 0)),
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "stray_dropped", c.StrayDropped, 2)
			eq(t, "overlap_withdrawn", c.OverlapWithdrawn, 0)
			eq(t, "established", fl.Established, 1)
		},
	},
	{
		name: "overlap loser that missed the client's first ACK: its next segment withdraws",
		steps: func(t testing.TB) []step {
			c := newConn(t, 49)
			syn := fromClient(c.port)
			syn.syn, syn.seq = true, 100
			second := c.c(101+1448, 90001, "", 100)
			return []step{
				c.rx(0, syn),
				c.tx(1, c.k(7000, 101, "S", 0)),
				{at: 5, in: tcpFrame(t, second), verdict: ToKernel, out: rstFor(t, second)},
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "overlap_withdrawn", c.OverlapWithdrawn, 1)
			eq(t, "withdrawn", fl.Withdrawn, 1)
		},
	},
	{
		name: "SYN then RST leaves no entry: pairs never fill the table",
		cfg:  func(c *ClassifierConfig) { c.MaxFlows, c.MaxHalfOpen = 4, 2 },
		steps: func(t testing.TB) []step {
			var out []step
			for i := 0; i < 10; i++ {
				c := newConn(t, 60+i)
				syn := fromClient(c.port)
				syn.syn, syn.seq = true, 100
				out = append(out, c.rx(uint32(i), syn), c.rx(uint32(i), c.c(101, 0, "R-", 0)))
			}
			c := newConn(t, 70)
			syn := fromClient(c.port)
			syn.syn, syn.seq = true, 100
			return append(out, c.rx(20, syn))
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "syn_accepted", c.SynAccepted, 11)
			eq(t, "table_full_dropped", c.TableFullDropped, 0)
			eq(t, "half_open_dropped", c.HalfOpenDropped, 0)
			eq(t, "syn_rcvd", fl.SynRcvd, 1)
			eq(t, "closing", fl.Closing, 0)
		},
	},
	{
		name: "tombstones of lost overlaps count as half-open",
		cfg:  func(c *ClassifierConfig) { c.MaxFlows, c.MaxHalfOpen = 8, 2 },
		steps: func(t testing.TB) []step {
			a, b, d := newConn(t, 71), newConn(t, 72), newConn(t, 73)
			syn := func(c conn) seg { s := fromClient(c.port); s.syn, s.seq = true, 100; return s }
			lost := a.c(101, 4242, "", 0)
			return []step{
				a.rx(0, syn(a)),
				{at: 1, in: tcpFrame(t, lost), verdict: ToKernel, out: rstFor(t, lost)},
				b.rx(2, syn(b)),
				d.drop(3, syn(d)),
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "half_open_dropped", c.HalfOpenDropped, 1)
			eq(t, "withdrawn", fl.Withdrawn, 1)
		},
	},
	{
		name: "a SYN takes the place of its tuple's expired or withdrawn entry, within the bounds",
		cfg:  func(c *ClassifierConfig) { c.MaxFlows, c.MaxHalfOpen = 1, 1 },
		steps: func(t testing.TB) []step {
			a, b := newConn(t, 74), newConn(t, 75)
			syn := func(c conn) seg { s := fromClient(c.port); s.syn, s.seq = true, 100; return s }
			lost := a.c(101, 4242, "", 0)
			bad := tcpFrame(t, syn(a))
			bad[14+20+16] ^= 0x40
			return []step{
				a.rx(0, syn(a)),
				a.rx(10_000, syn(a)), // expired: its entry is the new flow's, the table is not full
				b.drop(10_001, syn(b)),
				{at: 10_002, in: tcpFrame(t, lost), verdict: ToKernel, out: rstFor(t, lost)},
				a.rx(10_003, syn(a)),                 // the tombstone gives way to the new connection
				{at: 20_003, in: bad, verdict: Drop}, // refused: the expired entry goes all the same
				b.rx(20_004, syn(b)),
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "syn_accepted", c.SynAccepted, 4)
			eq(t, "expired", c.Expired, 2)
			eq(t, "table_full_dropped", c.TableFullDropped, 1)
			eq(t, "bad_checksum_dropped", c.BadChecksumDropped, 1)
			eq(t, "overlap_withdrawn", c.OverlapWithdrawn, 1)
			eq(t, "syn_rcvd", fl.SynRcvd, 1)
			eq(t, "withdrawn", fl.Withdrawn, 0)
		},
	},
	{
		name: "our kernel refuses the connection: the entry goes",
		steps: func(t testing.TB) []step {
			c, d := newConn(t, 74), newConn(t, 75)
			syn := fromClient(c.port)
			syn.syn, syn.seq = true, 100
			return append([]step{
				c.rx(0, syn),
				c.tx(1, c.k(0, 101, "R", 0)), // refused
			}, append(d.handshake()[:2],
				d.tx(3, d.k(5, 0, "R-", 0)), // the listener's answer to a stray ACK
				d.rx(4, d.c(101, 7001, "", 0)))...)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "syn_rcvd", fl.SynRcvd, 0)
			eq(t, "established", fl.Established, 1)
			eq(t, "closing", fl.Closing, 0)
		},
	},
	{
		name: "a corrupted segment changes nothing and never reaches the kernel",
		steps: func(t testing.TB) []step {
			c := newConn(t, 76)
			bad := func(at uint32, s seg, off int) step {
				f := tcpFrame(t, s)
				f[off] ^= 0x40
				return step{at: at, in: f, verdict: Drop}
			}
			syn := fromClient(newConn(t, 77).port)
			syn.syn, syn.seq = true, 100
			synackd := newConn(t, 78)
			synd := fromClient(synackd.port)
			synd.syn, synd.seq = true, 100
			return append(c.handshake(),
				bad(3, c.c(101, 7001, "F", 0), 14+20+16),      // TCP checksum
				bad(4, c.c(101, 0, "R-", 0), 14+10),           // IPv4 header checksum
				bad(5, c.c(101, 7001, "", 10), 14+20+20+3),    // payload
				bad(6, syn, 14+20+16),                         // a SYN: no entry
				synackd.rx(7, synd),                           // a handshake ...
				synackd.tx(8, synackd.k(7000, 101, "S", 0)),   // ...
				bad(9, synackd.c(101, 4242, "", 0), 14+20+16), // ... a corrupted ACK does not withdraw it
				synackd.rx(10, synackd.c(101, 7001, "", 0)),
			)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "bad_checksum_dropped", c.BadChecksumDropped, 5)
			eq(t, "established", fl.Established, 2)
			eq(t, "syn_accepted", c.SynAccepted, 2)
			eq(t, "overlap_withdrawn", c.OverlapWithdrawn, 0)
		},
	},
	{
		name: "echo requests to the VIP: the owner of the echo bucket answers, no one else",
		steps: func(t testing.TB) []step {
			mine := icmpFrame(t, clientIn(true, 0), 8, 0, 0x1234_0001, []byte("ping"))
			theirs := icmpFrame(t, clientIn(false, 0), 8, 0, 0x1234_0001, []byte("ping"))
			reply := serialize(t, &layers.Ethernet{SrcMAC: fxNodeMAC, DstMAC: fxClientMAC, EthernetType: layers.EthernetTypeIPv4},
				&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: fxVIP.AsSlice(), DstIP: clientIn(true, 0).AsSlice()},
				&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(0, 0), Id: 0x1234, Seq: 1}, gopacket.Payload([]byte("ping")))
			return []step{
				{in: mine, verdict: ToKernel, out: withMAC(mine, fxNodeMAC)},
				{in: theirs, verdict: Drop},
				{in: icmpFrame(t, clientIn(true, 0), 13, 0, 0, make([]byte, 12)), verdict: Drop}, // timestamp
				{tap: true, in: reply, verdict: ToNIC},
			}
		},
		expect: func(t testing.TB, c Counters, _ FlowCounts) {
			eq(t, "icmp_to_kernel", c.ICMPToKernel, 1)
			eq(t, "icmp_dropped", c.ICMPDropped, 2)
			eq(t, "malformed_dropped", c.MalformedDropped, 0)
		},
	},
	{
		name: "ICMP errors go to the kernel holding the quoted flow only",
		steps: func(t testing.TB) []step {
			c := newConn(t, 82)
			other := portIn(true, 83)
			deliver := func(f []byte) step { return step{at: 10, in: f, verdict: ToKernel, out: withMAC(f, fxNodeMAC)} }
			drop := func(f []byte) step { return step{at: 10, in: f, verdict: Drop} }
			router := netip.MustParseAddr("198.18.0.1")
			return append(c.handshake(),
				deliver(icmpFrame(t, router, 3, 4, 1200, quote(t, layers.IPProtocolTCP, c.port, 7001))),   // fragmentation needed
				deliver(icmpFrame(t, router, 11, 0, 0, quote(t, layers.IPProtocolTCP, c.port, 7001))),     // time exceeded
				drop(icmpFrame(t, router, 3, 4, 1200, quote(t, layers.IPProtocolTCP, other, 7001))),       // not our flow
				drop(icmpFrame(t, router, 3, 3, 0, quote(t, layers.IPProtocolUDP, c.port, 7001))),         // not TCP
				drop(icmpFrame(t, router, 3, 4, 1200, quote(t, layers.IPProtocolTCP, c.port, 7001)[:24])), // quote too short
			)
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "icmp_to_kernel", c.ICMPToKernel, 2)
			eq(t, "icmp_dropped", c.ICMPDropped, 3)
			eq(t, "established", fl.Established, 1)
		},
	},
	{
		name: "SYN-ACKs lost past the half-open timer: the retransmitted SYN and the kernel's answer save the connection",
		steps: func(t testing.TB) []step {
			c := newConn(t, 84)
			syn := fromClient(c.port)
			syn.syn, syn.seq = true, 100
			return []step{
				c.rx(0, syn),
				c.tx(1, c.k(7000, 101, "S", 0)), // lost on its way to the client
				c.rx(1000, syn),                 // the client's retransmissions
				c.rx(3000, syn),
				c.rx(7000, syn),
				c.rx(15000, syn),                    // after the half-open timer: a fresh entry
				c.tx(15001, c.k(7000, 101, "S", 0)), // the kernel's request socket answers
				c.rx(15002, c.c(101, 7001, "", 0)),
			}
		},
		expect: func(t testing.TB, c Counters, fl FlowCounts) {
			eq(t, "syn_accepted", c.SynAccepted, 2)
			eq(t, "expired", c.Expired, 1)
			eq(t, "established", fl.Established, 1)
			eq(t, "overlap_withdrawn", c.OverlapWithdrawn, 0)
		},
	},
}
