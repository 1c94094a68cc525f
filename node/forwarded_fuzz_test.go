package node

import (
	"net/http"
	"net/netip"
	"testing"
)

// FuzzClientIP checks the client IP of an HTTP request from a trusted
// balancer whose X-Forwarded-For header ends with any entry: it is the
// entry's address when forwardedAddr reads one, else the balancer's, and
// always a plain address in canonical form, the key the wire side uses
// for the same client (no zone, IPv4 unmapped). An address forwardedAddr
// reads, written back in any form it takes, reads as the same address.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{
		"192.0.2.1", "192.0.2.1:5123", "[2001:db8::1]:5123", "[2001:db8::1]", "2001:db8::1",
		"::ffff:192.0.2.1", "unknown", "", " 192.0.2.7 ", "fe80::1%eth0", "[fe80::1%eth0]:80",
	} {
		f.Add(s)
	}
	n := &Node{cfg: Config{ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	f.Fuzz(func(t *testing.T, entry string) {
		a, ok := forwardedAddr(entry)
		if ok {
			if !a.IsValid() {
				t.Fatalf("forwardedAddr(%q) = invalid address", entry)
			}
			forms := []string{a.String(), netip.AddrPortFrom(a, 5123).String()}
			if a.Is6() {
				forms = append(forms, "["+a.String()+"]")
			}
			for _, s := range forms {
				if b, ok := forwardedAddr(s); !ok || b != a {
					t.Fatalf("forwardedAddr(%q) = %v, %v; want %v", s, b, ok, a)
				}
			}
		}
		r := &http.Request{RemoteAddr: "10.1.2.3:40000", Header: http.Header{}}
		r.Header.Add("X-Forwarded-For", "198.51.100.1, "+entry)
		ip := n.ClientIP(r)
		p, err := netip.ParseAddr(ip)
		if err != nil || p.String() != ip || p.Zone() != "" || p.Is4In6() {
			t.Fatalf("ClientIP with X-Forwarded-For %q = %q: not a plain address", r.Header.Get("X-Forwarded-For"), ip)
		}
	})
}
