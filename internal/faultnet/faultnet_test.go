package faultnet

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// echo serves an echo server on loopback.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line through c and reports whether it came back.
func roundTrip(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}

func TestProxyBlocksAndCuts(t *testing.T) {
	var blocked atomic.Bool
	var tags atomic.Int32
	p, err := Listen(echo(t),
		func(net.Conn) string { tags.Add(1); return "a" },
		func(tag string) bool { return tag == "a" && blocked.Load() })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	open := dial()
	if !roundTrip(open) {
		t.Fatal("an allowed connection did not pass")
	}
	blocked.Store(true)
	p.Enforce()
	if roundTrip(open) {
		t.Fatal("an open connection passed after Enforce blocked it")
	}
	if roundTrip(dial()) {
		t.Fatal("a new connection passed while blocked")
	}
	blocked.Store(false)
	if !roundTrip(dial()) {
		t.Fatal("a new connection did not pass after the block was lifted")
	}
	if tags.Load() < 3 {
		t.Fatalf("tag ran %d times for 3 connections", tags.Load())
	}

	last := dial()
	if !roundTrip(last) {
		t.Fatal("connection did not pass")
	}
	p.Close()
	if roundTrip(last) {
		t.Fatal("a connection passed after Close")
	}
}
