// Package faultnet is a fault-injecting TCP proxy for the cluster tests and
// the chaos harness. A Proxy forwards each connection it accepts to one
// target; its owner decides which connections may pass (by a tag, e.g. the
// name of the node that dialled) and cuts the open ones that no longer may.
package faultnet

import (
	"io"
	"net"
	"sync"

	"github.com/cockroachdb/errors"
)

// Proxy forwards connections to a target, refusing and cutting those its
// Blocked predicate names.
type Proxy struct {
	ln      net.Listener
	target  string
	tag     func(in net.Conn) string // who dialled; nil: every connection is tagged ""
	blocked func(tag string) bool

	mu    sync.Mutex
	links map[*link]struct{}
}

type link struct {
	tag     string
	in, out net.Conn
}

// Listen starts a proxy on 127.0.0.1 (a free port) in front of target. tag
// names the dialler of an accepted connection (nil: all are ""); blocked
// reports whether connections with a tag must not pass. Both run on the
// proxy's goroutines; blocked also runs under the proxy's lock, so it must
// not call back into the proxy.
func Listen(target string, tag func(in net.Conn) string, blocked func(tag string) bool) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Wrap(err, "listen fault proxy")
	}
	p := &Proxy{ln: ln, target: target, tag: tag, blocked: blocked, links: map[*link]struct{}{}}
	go p.serve()
	return p, nil
}

// Addr is the proxy's listen address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Enforce closes every open connection that blocked now names. Call it after
// changing what blocked reports; connections accepted later are checked as
// they arrive.
func (p *Proxy) Enforce() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		if p.blocked(l.tag) {
			l.in.Close()
			l.out.Close()
		}
	}
}

// Close stops listening and closes every open connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		l.in.Close()
		l.out.Close()
	}
}

func (p *Proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(in)
	}
}

func (p *Proxy) pipe(in net.Conn) {
	tag := ""
	if p.tag != nil {
		tag = p.tag(in)
	}
	if p.isBlocked(tag) {
		in.Close()
		return
	}
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		in.Close()
		return
	}
	l := &link{tag: tag, in: in, out: out}
	// Checked again under the lock: a cut made while dialling must not miss
	// this connection (Enforce holds the same lock).
	p.mu.Lock()
	if p.blocked(tag) {
		p.mu.Unlock()
		in.Close()
		out.Close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		in.Close()
		out.Close()
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
	<-done
}

func (p *Proxy) isBlocked(tag string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked(tag)
}
