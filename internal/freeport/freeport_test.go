package freeport

import (
	"net"
	"testing"
)

func TestAddrNeverRepeatsAndIsFree(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		a, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
	}
	a, _ := Addr()
	ln, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("the address handed out is not free for TCP: %v", err)
	}
	ln.Close()
	pc, err := net.ListenPacket("udp", a)
	if err != nil {
		t.Fatalf("the address handed out is not free for UDP: %v", err)
	}
	pc.Close()
}
