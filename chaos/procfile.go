package main

import (
	"bufio"
	"io"
	"regexp"
	"strings"

	"github.com/cockroachdb/errors"
)

// Process is one line of a Procfile: a name and the shell command to run.
type Process struct {
	Name    string
	Command string
}

var procName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ParseProcfile reads `name: command` lines. Blank lines and lines starting
// with # are skipped; names must be unique.
func ParseProcfile(r io.Reader) ([]Process, error) {
	var out []Process
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(text, ":")
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		switch {
		case !ok || !procName.MatchString(name):
			return nil, errors.Newf("Procfile line %d: want `name: command`, got %q", line, text)
		case cmd == "":
			return nil, errors.Newf("Procfile line %d: process %s has no command", line, name)
		case seen[name]:
			return nil, errors.Newf("Procfile line %d: process %s defined twice", line, name)
		}
		seen[name] = true
		out = append(out, Process{Name: name, Command: cmd})
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Wrap(err, "read Procfile")
	}
	if len(out) == 0 {
		return nil, errors.New("Procfile defines no process")
	}
	return out, nil
}
