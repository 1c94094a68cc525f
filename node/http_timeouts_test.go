package node_test

import (
	"io"
	"net"
	"testing"
	"time"

	"tdb/internal/testnode"
	"tdb/node"
)

// TestHTTPSlowBodyIsCut: a request whose body trickles in, and a connection
// left idle, are closed by the node instead of held forever.
func TestHTTPSlowBodyIsCut(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t, func(c *node.Config) {
		c.HTTPReadTimeout, c.HTTPIdleTimeout = 300*time.Millisecond, 300*time.Millisecond
	})
	for _, tc := range []struct{ name, send string }{
		{"slow body", "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"},
		{"idle after a request", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.Node.HTTPAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			_, err = io.Copy(io.Discard, c) // until the node closes it
			if err != nil {
				t.Fatalf("the node did not close the connection: %v after %v", err, time.Since(start))
			}
		})
	}
}
