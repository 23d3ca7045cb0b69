package node

import (
	"net/netip"
	"strings"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/replypath"
)

// startReplyPath resolves dataplane.reply_path and, in kernel mode,
// installs the tap egress redirect (package replypath) until the node exits.
func (n *Node) startReplyPath(onExit func(func())) error {
	mode, err := replypath.ParseMode(n.cfg.Dataplane.ReplyPath)
	if err != nil {
		return inputErr("dataplane.reply_path: %v", err)
	}
	d, err := replypath.Resolve(mode, n.cfg.Interface.Device)
	if err != nil {
		return inputErr("%v", err)
	}
	if dev, ok := replypath.Netdev(n.cfg.Interface.Device); ok && strings.Contains(strings.SplitN(n.cfg.Interface.Device, ",", 2)[0], "af_packet") {
		// The worker never needs the frames this host sends. The
		// prefilter drops them too; a socket holds one filter.
		if !n.attachPrefilter(dev) {
			if k, err := replypath.IgnoreOutgoing(dev); err != nil || k == 0 {
				n.log.Warn("could not keep the host's own frames out of the af_packet ring", "netdev", dev, "sockets", k, "err", err)
			}
		}
	}
	if d.Mode == replypath.Kernel {
		in, err := replypath.Apply(replypath.Params{
			VIP:    netip.MustParseAddr(n.cfg.Cluster.VIP),
			Tap:    n.cfg.Interface.Tap,
			Netdev: d.Netdev,
		})
		if err != nil {
			return err
		}
		onExit(func() {
			if err := in.Remove(); err != nil {
				n.log.Warn("removing the kernel reply path", "err", err)
			}
		})
		n.replyInstalled = in
	}
	n.reply = d
	n.log.Info("reply path", "mode", d.Mode, "netdev", d.Netdev, "reason", d.Reason)
	return nil
}

func (n *Node) replyPathStatus() api.ReplyPathStatus {
	return api.ReplyPathStatus{Mode: string(n.reply.Mode), Netdev: n.reply.Netdev, Reason: n.reply.Reason}
}

func (n *Node) replyPathStats() api.ReplyPathStats {
	s := api.ReplyPathStats{Mode: string(n.reply.Mode)}
	if n.replyInstalled != nil {
		if p, b, err := n.replyInstalled.Moved(); err == nil {
			s.KernelPackets, s.KernelBytes = p, b
		} else {
			n.log.Warn("reading the kernel reply path's counter", "err", err)
		}
	}
	if d, err := replypath.KernelTxDropped(n.cfg.Interface.Tap); err == nil {
		s.TapTxDropped = d
	}
	return s
}
