package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/errors"

	"tdb/internal/faultnet"
)

// Partitions. Each node advertises (--raft-advertise) the address of a TCP
// proxy in front of its raft listener, so every raft connection towards a
// node passes through that node's proxy. A proxy alone only knows the
// destination; to cut the link between two nodes in both directions it
// must also know which node dialled. It finds out from the kernel: the
// accepted connection's remote address is the dialling socket's local
// address, /proc/net/tcp maps it to a socket inode, and the node whose
// /proc/PID/fd holds that inode is the source. Blocking the pair {a, b}
// closes every proxied connection a→b and b→a and refuses new ones, so a
// node can be isolated from the others while the harness still reaches it.
//
// Gossip (memberlist, UDP and TCP) and the nodes' HTTP (leader forwarding,
// catch-up) are not proxied: a partition cuts raft, the consensus path,
// while the isolated node still sees its peers alive through gossip — the
// asymmetric kind of failure that tests fail-closed logins.

// netSim owns the proxies and the set of blocked node pairs.
type netSim struct {
	pids func() map[int]string // running node pids by pid → node name

	mu      sync.Mutex
	blocked map[[2]string]bool // unordered pairs stored both ways
	proxies []*faultnet.Proxy
}

func newNetSim(pids func() map[int]string) *netSim {
	return &netSim{pids: pids, blocked: map[[2]string]bool{}}
}

// addProxy starts a proxy for node's raft listener at target; a connection
// passes unless the pair (dialling node, node) is cut.
func (s *netSim) addProxy(node, target string) (*faultnet.Proxy, error) {
	p, err := faultnet.Listen(target,
		func(in net.Conn) string { return s.identifyRetry(in.RemoteAddr()) },
		func(src string) bool { return s.cut(src, node) })
	if err != nil {
		return nil, errors.Wrap(err, "raft proxy")
	}
	s.mu.Lock()
	s.proxies = append(s.proxies, p)
	s.mu.Unlock()
	return p, nil
}

// cut reports whether a connection from src to node must not pass. A
// dialler left unidentified ("": its socket caught between descriptors, or
// /proc read too late on a loaded machine) may be a node cut from node, so
// it does not pass while any link to node is cut: a partition leaks no
// connection.
func (s *netSim) cut(src, node string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src != "" {
		return s.blocked[[2]string{src, node}]
	}
	for pair := range s.blocked {
		if pair[1] == node {
			return true
		}
	}
	return false
}

// isolate cuts every link between node and the other nodes.
func (s *netSim) isolate(node string, all []string) {
	s.mu.Lock()
	for _, o := range all {
		if o != node {
			s.blocked[[2]string{node, o}] = true
			s.blocked[[2]string{o, node}] = true
		}
	}
	proxies := slices.Clone(s.proxies)
	s.mu.Unlock()
	for _, p := range proxies {
		p.Enforce()
	}
}

// heal lifts every cut.
func (s *netSim) heal() {
	s.mu.Lock()
	s.blocked = map[[2]string]bool{}
	s.mu.Unlock()
}

// close stops the proxies.
func (s *netSim) close() {
	s.mu.Lock()
	proxies := slices.Clone(s.proxies)
	s.mu.Unlock()
	for _, p := range proxies {
		p.Close()
	}
}

// identifyRetry is identify, a few times over: the owner can be caught
// moving the socket between descriptors (dup2 then close), when neither
// descriptor reads as the socket, and an unknown source would slip through
// a partition.
func (s *netSim) identifyRetry(remote net.Addr) string {
	for range 20 {
		if src := s.identify(remote); src != "" {
			return src
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ""
}

// identify names the node that owns the dialling socket at remote ("" when
// none of the running nodes does).
func (s *netSim) identify(remote net.Addr) string {
	ta, ok := remote.(*net.TCPAddr)
	if !ok {
		return ""
	}
	inode, err := socketInode(ta)
	if err != nil || inode == "" {
		return ""
	}
	want := "socket:[" + inode + "]"
	for pid, name := range s.pids() {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name())); err == nil && l == want {
				return name
			}
		}
	}
	return ""
}

// socketInode finds the inode of the TCP socket whose local address is addr
// in /proc/net/tcp (IPv4 loopback only, which is all a chaos run uses).
func socketInode(addr *net.TCPAddr) (string, error) {
	ip4 := addr.IP.To4()
	if ip4 == nil {
		return "", errors.New("not IPv4")
	}
	// /proc/net/tcp prints the address as the host-order hex of the
	// network-order 32-bit word: little-endian hosts reverse the bytes.
	local := strings.ToUpper(hex.EncodeToString([]byte{ip4[3], ip4[2], ip4[1], ip4[0]})) + ":" + fmt.Sprintf("%04X", addr.Port)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[1] != local {
			continue
		}
		if _, err := strconv.Atoi(fields[9]); err == nil && fields[9] != "0" {
			return fields[9], nil
		}
	}
	return "", sc.Err()
}
