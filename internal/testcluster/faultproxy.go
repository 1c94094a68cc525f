package testcluster

import (
	"sync/atomic"
	"testing"

	"tdb/internal/faultnet"
)

// FaultProxy is a TCP proxy in front of one node's raft listener. Every node
// dials the advertised proxy address, so Block cuts all raft traffic towards
// that node; its own replies and outbound dials to others' proxies are
// unaffected unless those are blocked too.
type FaultProxy struct {
	*faultnet.Proxy
	blocked atomic.Bool
}

// NewFaultProxy listens on 127.0.0.1:0 and forwards to target.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	p := &FaultProxy{}
	fp, err := faultnet.Listen(target, nil, func(string) bool { return p.blocked.Load() })
	if err != nil {
		t.Fatal(err)
	}
	p.Proxy = fp
	t.Cleanup(fp.Close)
	return p
}

// Block drops every open connection and refuses new ones until Unblock.
func (p *FaultProxy) Block() {
	p.blocked.Store(true)
	p.Enforce()
}

// Unblock lets connections through again.
func (p *FaultProxy) Unblock() { p.blocked.Store(false) }
