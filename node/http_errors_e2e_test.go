package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"tdb/internal/testnode"
)

// TestUnroutedInternalPathsAnswerJSON: on the public HTTP port, a request
// under /internal/, /readyz or /metrics that no route takes gets the JSON
// {code, message} error of the rest of the API, not the ServeMux's plain
// text; the routes that exist still answer.
func TestUnroutedInternalPathsAnswerJSON(t *testing.T) {
	t.Parallel()
	e := testnode.Start(t)
	for _, tc := range []struct {
		name, method, path string
		status             int
		code, allow        string
	}{
		{name: "unknown internal call", method: "GET", path: "/internal/nosuch", status: 404, code: "not_found"},
		{name: "readyz with a slash", method: "GET", path: "/readyz/", status: 404, code: "not_found"},
		{name: "metrics below", method: "GET", path: "/metrics/x", status: 404, code: "not_found"},
		{name: "metrics posted", method: "POST", path: "/metrics", status: 405, code: "method_not_allowed", allow: "GET, HEAD"},
		{name: "readyz deleted", method: "DELETE", path: "/readyz", status: 405, code: "method_not_allowed", allow: "GET, HEAD"},
		{name: "internal apply read", method: "GET", path: "/internal/apply", status: 405, code: "method_not_allowed", allow: "POST"},
		{name: "metrics", method: "GET", path: "/metrics", status: 200},
		{name: "readyz", method: "GET", path: "/readyz", status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+e.Node.HTTPAddr()+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s: status %d, want %d: %s", tc.method, tc.path, resp.StatusCode, tc.status, body)
			}
			if tc.code == "" {
				return
			}
			var got struct{ Code, Message string }
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("%s %s: Content-Type %q: %s", tc.method, tc.path, ct, body)
			}
			if err := json.Unmarshal(body, &got); err != nil || got.Code != tc.code || got.Message == "" {
				t.Fatalf("%s %s: %s, want a JSON error %s (%v)", tc.method, tc.path, body, tc.code, err)
			}
			if allow := resp.Header.Get("Allow"); allow != tc.allow {
				t.Fatalf("%s %s: Allow %q, want %q", tc.method, tc.path, allow, tc.allow)
			}
		})
	}
}
