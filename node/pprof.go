package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strings"
)

// withPprof serves Go's profiler under /debug/pprof/ to the cluster
// operator's admin key only.
func (n *Node) withPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", n.adminOnly(pprof.Index))
	mux.HandleFunc("/debug/pprof/cmdline", n.adminOnly(pprof.Cmdline))
	mux.HandleFunc("/debug/pprof/profile", n.adminOnly(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", n.adminOnly(pprof.Symbol))
	mux.HandleFunc("/debug/pprof/trace", n.adminOnly(pprof.Trace))
}

func (n *Node) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(n.cfg.AdminKey))
		if n.cfg.AdminKey == "" || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			http.Error(w, `{"code":"unauthorized","message":"the profiler needs the admin key"}`, http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}
