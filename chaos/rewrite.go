package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cockroachdb/errors"

	"tdb/internal/freeport"
)

// A chaos run starts the Procfile's own processes, rewritten to be hermetic:
//
//   - the command line is split into words like sh would (quotes, and
//     ${VAR:-default} / $VAR expanded from the environment);
//   - the executable bin/tdb becomes the freshly built binary;
//   - every host:port a process listens on or names (--wire-addr, --http-addr,
//     --raft-addr, --gossip-addr, --public-wire-addr, each --join entry) and
//     the backend's --port are mapped to free loopback ports, consistently
//     across processes: the Procfile's 127.0.0.1:7941 is the same new address
//     in n1's --gossip-addr and in n2's --join;
//   - --data-dir becomes a directory of the run's temp dir named after the
//     process;
//   - --proxy-protocol-from is dropped: the harness talks to the nodes
//     directly (no haproxy), from loopback addresses it chooses per client,
//     so per-IP bans hit only the clients meant to be banned.
//
// The `lb` process (haproxy) is not started.

// addrFlags name listen or peer addresses to remap.
var addrFlags = map[string]bool{
	"--wire-addr": true, "--http-addr": true, "--raft-addr": true, "--gossip-addr": true, "--public-wire-addr": true,
}

// dropFlags are removed with their value.
var dropFlags = map[string]bool{"--proxy-protocol-from": true}

// remapper hands out a free loopback port for each address of the Procfile,
// the same one every time the address appears. It holds each port (TCP and
// UDP: gossip uses both) until release, so no two addresses, and no proxy
// listening meanwhile, can be given the same port.
type remapper struct {
	addrs map[string]string
	ports map[string]string
	held  []func() // releases the reserved ports
}

func newRemapper() *remapper {
	return &remapper{addrs: map[string]string{}, ports: map[string]string{}}
}

func (m *remapper) addr(old string) (string, error) {
	if a, ok := m.addrs[old]; ok {
		return a, nil
	}
	a, err := m.reserve()
	if err != nil {
		return "", err
	}
	m.addrs[old] = a
	return a, nil
}

func (m *remapper) port(old string) (string, error) {
	if p, ok := m.ports[old]; ok {
		return p, nil
	}
	a, err := m.addr("127.0.0.1:" + old)
	if err != nil {
		return "", err
	}
	_, p, _ := net.SplitHostPort(a)
	m.ports[old] = p
	return p, nil
}

// reserve finds a loopback port free for TCP and UDP and holds it.
func (m *remapper) reserve() (string, error) {
	a, release, err := freeport.Reserve()
	if err != nil {
		return "", err
	}
	m.held = append(m.held, release)
	return a, nil
}

// release frees the ports handed out so far, for the processes to bind.
func (m *remapper) release() {
	for _, release := range m.held {
		release()
	}
	m.held = nil
}

// rewriteCommand turns one Procfile command into argv for a hermetic run
// (see the comment at the top of this file). Flags are read in both
// `--flag value` and `--flag=value` forms.
func rewriteCommand(p Process, bin, dir string, m *remapper) ([]string, error) {
	words, err := splitWords(p.Command, os.Getenv)
	if err != nil {
		return nil, errors.Wrapf(err, "process %s", p.Name)
	}
	if len(words) == 0 {
		return nil, errors.Newf("process %s: empty command", p.Name)
	}
	if filepath.Base(words[0]) != "tdb" {
		return nil, errors.Newf("process %s: runs %s, not tdb", p.Name, words[0])
	}
	out := []string{bin}
	for i := 1; i < len(words); i++ {
		flag, value, inline := strings.Cut(words[i], "=")
		if !strings.HasPrefix(flag, "--") {
			out = append(out, words[i])
			continue
		}
		known := addrFlags[flag] || dropFlags[flag] || flag == "--join" || flag == "--data-dir" || flag == "--port"
		if !known {
			out = append(out, words[i])
			continue
		}
		if !inline {
			if i+1 >= len(words) {
				return nil, errors.Newf("process %s: %s has no value", p.Name, flag)
			}
			i++
			value = words[i]
		}
		switch {
		case dropFlags[flag]:
			continue
		case addrFlags[flag]:
			if value, err = m.addr(value); err != nil {
				return nil, err
			}
		case flag == "--join":
			var parts []string
			for _, a := range strings.Split(value, ",") {
				if a = strings.TrimSpace(a); a == "" {
					continue
				}
				na, err := m.addr(a)
				if err != nil {
					return nil, err
				}
				parts = append(parts, na)
			}
			value = strings.Join(parts, ",")
		case flag == "--data-dir":
			value = filepath.Join(dir, p.Name)
		case flag == "--port":
			if _, err := strconv.Atoi(value); err != nil {
				return nil, errors.Newf("process %s: --port %q is not a number", p.Name, value)
			}
			if value, err = m.port(value); err != nil {
				return nil, err
			}
		}
		out = append(out, flag, value)
	}
	return out, nil
}

// flagValue returns the value of flag in argv ("" if absent).
func flagValue(argv []string, flag string) string {
	for i, w := range argv {
		if w == flag && i+1 < len(argv) {
			return argv[i+1]
		}
		if v, ok := strings.CutPrefix(w, flag+"="); ok {
			return v
		}
	}
	return ""
}

// splitWords splits a command line into words the way sh does for the
// simple commands a Procfile holds: blanks separate words, single quotes
// keep everything, double quotes keep blanks but expand variables, a
// backslash escapes the next character, and $VAR, ${VAR} and
// ${VAR:-default} expand with getenv (the value stays one word, as if
// quoted). Anything fancier is an error.
func splitWords(s string, getenv func(string) string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, errors.New("unterminated double quote")
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '$' {
					v, n, err := expandVar(s[i:], getenv)
					if err != nil {
						return nil, err
					}
					cur.WriteString(v)
					i += n - 1
					continue
				}
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				cur.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == '$':
			v, n, err := expandVar(s[i:], getenv)
			if err != nil {
				return nil, err
			}
			cur.WriteString(v)
			i += n - 1
			inWord = true
		case strings.IndexByte("|&;<>()`*?[]{}", c) >= 0:
			return nil, errors.Newf("shell syntax %q is not supported in a chaos run", string(c))
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// expandVar expands the variable reference at the start of s and returns
// its value and the length it consumed.
func expandVar(s string, getenv func(string) string) (string, int, error) {
	if len(s) > 1 && s[1] == '{' {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", 0, errors.New("unterminated ${")
		}
		body := s[2:end]
		name, def, hasDef := strings.Cut(body, ":-")
		if !validVarName(name) {
			return "", 0, errors.Newf("unsupported expansion ${%s}", body)
		}
		v := getenv(name)
		if v == "" && hasDef {
			v = def
		}
		return v, end + 1, nil
	}
	n := 1
	for n < len(s) && (s[n] == '_' || s[n] >= 'A' && s[n] <= 'Z' || s[n] >= 'a' && s[n] <= 'z' || n > 1 && s[n] >= '0' && s[n] <= '9') {
		n++
	}
	if n == 1 {
		return "$", 1, nil
	}
	return getenv(s[1:n]), n, nil
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
