package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strconv"
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

// adminOnly checks the admin key as the public API checks keys: a banned
// IP is refused first, and a wrong key counts toward its ban (a request
// with none does not), so the profiler is no place to guess the key.
func (n *Node) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ip := n.ClientIP(r)
		if left, msg, banned := n.Banned(ip); banned {
			w.Header().Set("Retry-After", strconv.FormatInt(left, 10))
			writeInternal(w, http.StatusTooManyRequests, &internalError{Code: "rate_limited", Message: msg})
			return
		}
		got, sent := bearerKey(r)
		a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(n.cfg.AdminKey))
		if n.cfg.AdminKey == "" || !sent || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			if n.cfg.AdminKey != "" && sent {
				n.AuthFailed(ip)
			}
			http.Error(w, `{"code":"unauthorized","message":"the profiler needs the admin key"}`, http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// bearerKey returns the bearer key a request carries, and whether it
// carries one at all: as in the public API, a request with none is a
// client's mistake, not a guess, and is not counted toward a ban; so a key
// sent any other way (without the scheme) is no key either. The key is
// taken as sent: a cluster secret may be any text.
func bearerKey(r *http.Request) (string, bool) {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return key, strings.TrimSpace(key) != ""
}
