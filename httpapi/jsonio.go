package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cockroachdb/errors"
)

// maxBody bounds every request body.
const maxBody = 1 << 20

// decode reads the request body as one JSON document into v. Unknown fields,
// a field given twice, trailing data, an empty body and bodies over 1 MiB are
// client errors.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return bodyError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return bodyError(err)
		}
		return badRequest("invalid JSON body: more than one JSON document")
	}
	return duplicateField(body)
}

// duplicateField refuses a body whose object names a field twice (in any
// case, as the decoder matches names): the decoder would keep the last
// value silently, while a proxy or log in front may read the first.
func duplicateField(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil // not an object: its fields are not named
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil // decoded once already: cannot happen
		}
		name, _ := t.(string)
		folded := foldName(name)
		if seen[folded] {
			return badRequest("invalid JSON body: field %q is given more than once", name)
		}
		seen[folded] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// foldName maps a field name to one form for all the names the decoder takes
// for the same field: it matches them case-insensitively, Unicode's simple
// folding included (the Kelvin sign is a k).
func foldName(name string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, name)
}

func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return errf(http.StatusRequestEntityTooLarge, codeTooLarge, "request body is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return badRequest("request body is empty: expected a JSON object")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return badRequest("unknown field %s in request body", f)
	}
	return badRequest("invalid JSON body: %s", strings.TrimPrefix(msg, "json: "))
}

// writeJSON writes v with a status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// checkLabel refuses a name shown to people (a project's, a key's) that is
// not UTF-8 or holds a control character, which a terminal printing it
// would obey, or an invisible format character (a zero-width space, a
// right-to-left override), which makes one name look like another in a
// listing.
func checkLabel(what, name string) error {
	if !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
	}) {
		return badRequest("%s must be UTF-8 text without control characters or invisible format characters (such as U+200B or U+202E)", what)
	}
	return nil
}
