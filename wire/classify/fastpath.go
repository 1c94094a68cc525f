package classify

import "strings"

// The fast path classifies, without cgo, a single statement whose kind is
// fixed by its first keyword. It gives up (and the parser decides) unless that
// is provable from the bytes:
//   - the text has no ';' except trailing ones, so it is one statement;
//   - SELECT, WITH and VALUES contain no "into" anywhere (SELECT … INTO creates
//     a table; WITH … INSERT INTO is left to the parser too);
//   - transaction keywords stand alone (COMMIT PREPARED, ROLLBACK TO … differ).
// Leading whitespace and comments (nested /* */ like PostgreSQL) are skipped.

type fastRule uint8

const (
	anyRest fastRule = iota // the keyword alone decides the kind
	noInto                  // … unless the text contains "into"
	alone                   // only whitespace may follow the keyword
)

type fastKeyword struct {
	kind Kind
	tag  string
	rule fastRule
}

// lookupKeyword returns the fast-path treatment of a first word made of
// ASCII letters, in any case.
func lookupKeyword(w string) (fastKeyword, bool) {
	var up [8]byte
	if len(w) > len(up) {
		return fastKeyword{}, false
	}
	for i := range len(w) {
		up[i] = w[i] &^ 0x20 // w holds letters only
	}
	switch string(up[:len(w)]) {
	case "SELECT":
		return fastKeyword{DML, "SELECT", noInto}, true
	case "INSERT":
		return fastKeyword{DML, "INSERT", anyRest}, true
	case "UPDATE":
		return fastKeyword{DML, "UPDATE", anyRest}, true
	case "DELETE":
		return fastKeyword{DML, "DELETE", anyRest}, true
	case "MERGE":
		return fastKeyword{DML, "MERGE", anyRest}, true
	case "WITH":
		return fastKeyword{DML, "WITH", noInto}, true
	case "VALUES":
		return fastKeyword{DML, "SELECT", noInto}, true
	case "SHOW":
		return fastKeyword{Other, "SHOW", anyRest}, true
	case "BEGIN":
		return fastKeyword{Begin, "BEGIN", alone}, true
	case "COMMIT", "END":
		return fastKeyword{Commit, "COMMIT", alone}, true
	case "ROLLBACK", "ABORT":
		return fastKeyword{Rollback, "ROLLBACK", alone}, true
	}
	return fastKeyword{}, false
}

// fastClassify returns ok=false when the parser must decide. The statement
// it finds goes in *one when one is not nil, in a new slice otherwise.
func fastClassify(sql string, one *[1]Statement) (r Result, ok bool) {
	return fastClassifyText(sql, one, false)
}

// fastClassifyText is fastClassify; with single set the caller knows from
// PostgreSQL's scanner that sql is one statement (a ';' in it is inside a
// literal, a quoted name or a comment), so the fast path need not give up
// on one.
func fastClassifyText(sql string, one *[1]Statement, single bool) (r Result, ok bool) {
	i, ok := skipComments(sql, 0)
	if !ok {
		return Result{}, false // unterminated comment: let the parser say so
	}
	if i == len(sql) {
		return Result{}, true // empty, whitespace or comments only
	}
	j := i
	for j < len(sql) && isLetter(sql[j]) {
		j++
	}
	if j == i || (j < len(sql) && IsIdentByte(sql[j])) {
		return Result{}, false
	}
	kw, ok := lookupKeyword(sql[i:j])
	if !ok {
		return Result{}, false
	}

	end, trimmedSemi := trimTail(sql)
	if !single && strings.IndexByte(sql[j:end], ';') >= 0 {
		return Result{}, false // more than one statement
	}
	if !single && trimmedSemi && lastLineHasDashes(sql[:end]) {
		return Result{}, false // the trailing ';' may be inside a -- comment
	}
	switch kw.rule {
	case noInto:
		if containsInto(sql[j:end]) {
			return Result{}, false
		}
	case alone:
		if strings.Trim(sql[j:end], pgSpace) != "" {
			return Result{}, false
		}
	}
	st := Statement{Text: sql[i:end], Kind: kw.kind, Tag: kw.tag}
	if one == nil {
		return Result{Statements: []Statement{st}}, true
	}
	one[0] = st
	return Result{Statements: one[:]}, true
}

// skipComments skips whitespace and comments from i; ok is false for an
// unterminated block comment.
func skipComments(s string, i int) (int, bool) {
	for i < len(s) {
		switch {
		case isSpace(s[i]):
			i++
		case strings.HasPrefix(s[i:], "--"):
			nl := strings.IndexAny(s[i:], "\n\r")
			if nl < 0 {
				return len(s), true
			}
			i += nl + 1
		case strings.HasPrefix(s[i:], "/*"):
			depth := 1
			for i += 2; depth > 0; {
				if i+1 >= len(s) {
					return i, false
				}
				switch {
				case s[i] == '*' && s[i+1] == '/':
					depth--
					i += 2
				case s[i] == '/' && s[i+1] == '*':
					depth++
					i += 2
				default:
					i++
				}
			}
		default:
			return i, true
		}
	}
	return i, true
}

// trimTail returns the end of s without trailing whitespace and semicolons,
// and whether a semicolon was trimmed.
func trimTail(s string) (end int, semi bool) {
	end = len(s)
	for end > 0 {
		c := s[end-1]
		if c == ';' {
			semi = true
		} else if !isSpace(c) {
			break
		}
		end--
	}
	return end, semi
}

func lastLineHasDashes(s string) bool {
	if nl := strings.LastIndexAny(s, "\n\r"); nl >= 0 {
		s = s[nl+1:]
	}
	return strings.Contains(s, "--")
}

// containsInto reports whether s contains "into" in any letter case. It is a
// Horspool search: most bytes let it skip four ahead.
func containsInto(s string) bool {
	for i := 3; i < len(s); {
		switch s[i] | 0x20 { // folds only A-Z onto a-z for these four letters
		case 'o':
			if s[i-3]|0x20 == 'i' && s[i-2]|0x20 == 'n' && s[i-1]|0x20 == 't' {
				return true
			}
			i += 4
		case 't':
			i++
		case 'n':
			i += 2
		case 'i':
			i += 3
		default:
			i += 4
		}
	}
	return false
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// IsIdentByte reports whether c can continue an identifier in PostgreSQL's lexer.
func IsIdentByte(c byte) bool {
	return isLetter(c) || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}
