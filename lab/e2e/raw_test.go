package e2e

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/lab"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sendStrayACK sends, from the client's interface, one ACK for a flow that
// was never opened, and counts the frames from the VIP to that port during
// the next second.
func sendStrayACK(port uint16) (int, error) {
	got := 0
	err := lab.InNamespace("client", func() error {
		ifi, err := net.InterfaceByName(lab.Interface)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		clusterMAC, _ := net.ParseMAC(lab.ClusterMAC)
		eth := &layers.Ethernet{SrcMAC: ifi.HardwareAddr, DstMAC: clusterMAC, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: net.ParseIP(lab.ClientIP).To4(), DstIP: net.ParseIP(lab.VIP).To4()}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(port), DstPort: 80, ACK: true, Seq: 12345, Ack: 67890, Window: 1000}
		tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
			return err
		}
		if err := unix.Sendto(fd, buf.Bytes(), 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		deadline := time.Now().Add(time.Second)
		frame := make([]byte, 2048)
		vip := net.ParseIP(lab.VIP).To4()
		for time.Now().Before(deadline) {
			n, _, err := unix.Recvfrom(fd, frame, 0)
			if err != nil {
				if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
					continue
				}
				return err
			}
			f := frame[:n]
			if n >= 14+20+4 && binary.BigEndian.Uint16(f[12:14]) == 0x0800 && f[23] == 6 &&
				net.IP(f[26:30]).Equal(vip) && binary.BigEndian.Uint16(f[36:38]) == port {
				got++
			}
		}
		return nil
	})
	return got, err
}
