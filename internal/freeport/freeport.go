// Package freeport hands out loopback addresses for processes and nodes
// that must know their address before they listen (raft, gossip, a child
// process's flags). A port is free for both TCP and UDP when handed out,
// and never handed out twice by one process, so two addresses of one test
// cannot collide (the kernel may otherwise return a just-closed port again).
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
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
	for i := range 100 {
		// Outside the kernel's ephemeral range first: an outgoing
		// connection (of this test binary or another) can take an
		// ephemeral port between the reservation and the bind.
		addr := "127.0.0.1:0"
		if port, ok := belowEphemeral(i); ok {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if addr != "127.0.0.1:0" {
				continue // taken: try another
			}
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

// belowEphemeral returns a random port between 10000 and the start of the
// kernel's ephemeral range, for the first 90 tries, where that range is
// known and leaves room.
func belowEphemeral(try int) (int, bool) {
	if try >= 90 {
		return 0, false
	}
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 {
		return 0, false
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 12000 {
		return 0, false
	}
	return 10000 + rand.IntN(low-10000), true
}
