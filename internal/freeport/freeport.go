// Package freeport hands out loopback addresses for processes and nodes
// that must know their address before they listen (raft, gossip, a child
// process's flags). A port is free for both TCP and UDP when handed out,
// and never handed out twice by one process, so two addresses of one test
// cannot collide (the kernel may otherwise return a just-closed port again).
package freeport

import (
	"net"
	"sync"

	"github.com/cockroachdb/errors"
)

var (
	mu   sync.Mutex
	used = map[string]bool{}
)

// Addr returns 127.0.0.1:PORT with a port that is free right now.
func Addr() (string, error) {
	a, release, err := Reserve()
	if err != nil {
		return "", err
	}
	release()
	return a, nil
}

// Reserve returns 127.0.0.1:PORT with a free port and holds it, TCP and UDP,
// until release: nothing else that binds port 0 meanwhile can get it.
func Reserve() (addr string, release func(), err error) {
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, errors.Wrap(err, "find a free port")
		}
		a := ln.Addr().String()
		pc, err := net.ListenPacket("udp", a)
		if err != nil || used[a] {
			ln.Close()
			if pc != nil {
				pc.Close()
			}
			continue
		}
		used[a] = true
		return a, func() { ln.Close(); pc.Close() }, nil
	}
	return "", nil, errors.New("find a free port: none free for both TCP and UDP")
}
