package classify

import (
	"errors"
	"strings"
	"unicode/utf8"
	"unsafe"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
)

// Statement is one statement of a query string.
type Statement struct {
	// Text is the statement's exact text: a substring of the input from its
	// first token to its end, without the terminating semicolon, surrounding
	// whitespace or leading comments. A comment after the last statement of an
	// input that has no final semicolon stays part of that statement.
	Text  string
	Kind  Kind
	NoTxn bool   // cannot run inside a transaction block (CREATE INDEX CONCURRENTLY, VACUUM, …)
	Tag   string // short command tag for logs, e.g. "CREATE TABLE", "INSERT"
	// Setting is the lower-case name a SET or RESET names, as the parser
	// decoded it ("client_encoding" for SET NAMES, "all" for RESET ALL);
	// empty for other statements.
	Setting string
	// Savepoint is the savepoint a SAVEPOINT, RELEASE or ROLLBACK TO names,
	// as the parser read it (folded to lower case unless quoted).
	Savepoint string
	// Deallocate is the prepared statement a DEALLOCATE names, as the
	// parser read it; empty for DEALLOCATE ALL and other statements.
	Deallocate string
	// Bound says why the statement's text means something only in this
	// session or database, so that run elsewhere it would fail or do
	// another thing (CREATE TABLE AS EXECUTE of a prepared statement; a
	// policy that names roles); empty for other statements.
	Bound string
}

// Result is the classification of one query string (a simple-protocol Query,
// or the text of an extended-protocol Parse).
type Result struct {
	Statements []Statement // in order; empty for blank or comment-only text
	// Unparsed is set when PostgreSQL's parser rejects the text. Statements is
	// then empty; the proxy refuses the text, since it cannot know what the
	// server would run (a server of another major version, or another
	// client encoding, may read it).
	Unparsed bool
	// ParseError is the parser's message for Unparsed text, and
	// ParseErrorPos the 1-based character position it points at (0: none).
	ParseError    string
	ParseErrorPos int
	// TooComplex is set, without parsing, for text whose runs of operator
	// characters would keep PostgreSQL's lexer busy for seconds (see
	// complexity.go). Statements is then empty; the proxy must refuse the text
	// (SQLSTATE 54001) rather than forward it.
	TooComplex bool
	// TooLong is set by ClassifyIn, without parsing, for text the parser
	// would have to read that is longer than MaxParsed; the proxy must
	// refuse it.
	TooLong bool
}

// HasDDL reports whether any statement is DDL.
func (r Result) HasDDL() bool { return r.has(DDL) }

// HasCopy reports whether any statement is a COPY.
func (r Result) HasCopy() bool { return r.has(Copy) }

func (r Result) has(k Kind) bool {
	for i := range r.Statements {
		if r.Statements[i].Kind == k {
			return true
		}
	}
	return false
}

// IsDDL reports whether sql contains a DDL statement, for use as a guard.
// Unparseable text is not DDL (the server rejects it); TooComplex text counts
// as DDL because it cannot be inspected.
func IsDDL(sql string) bool {
	r := Classify(sql)
	return r.TooComplex || r.HasDDL()
}

// Classify splits sql into statements and classifies each one. Like the
// server, it reads sql only up to the first NUL byte.
func Classify(sql string) Result {
	sql, r, ok := withoutParser(sql, nil)
	if ok {
		return r
	}
	return parseClassify(sql)
}

// withoutParser cuts sql at its first NUL (PostgreSQL reads a string up to
// it) and classifies what needs no parser: text too complex to lex, and the
// common statements the fast path knows. ok is false when the parser must
// read the returned text.
func withoutParser(sql string, one *[1]Statement) (_ string, _ Result, ok bool) {
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	if tooComplex(sql) {
		return sql, Result{TooComplex: true}, true
	}
	if r, ok := fastClassify(sql, one); ok {
		return sql, r, true
	}
	return sql, Result{}, false
}

// MaxParsed bounds the text PostgreSQL's parser reads at once for the proxy
// (ClassifyIn; Classify, for the operator's own input, has no bound). Its
// tree costs about 60 bytes of memory per byte of text (several statements
// of 6 MB took 350 MB). A longer text is read a statement at a time
// (classifyLong), and the fast path reads longer single statements (a
// large INSERT ... VALUES) without the parser: only one statement longer
// than this that needs the parser is refused.
const MaxParsed = 8 << 20

// classifyLong classifies a text longer than MaxParsed a statement at a
// time: PostgreSQL's scanner, which builds no tree, cuts it where the
// server would (at each ';' outside literals, quoted names and comments),
// and each statement goes through the fast path, which then knows the text
// is one statement, or through the parser. Only a statement that needs the
// parser and is itself longer than MaxParsed makes the text TooLong. The
// one place the scanner cuts where the parser would not, a BEGIN ATOMIC
// body, leaves a statement the parser refuses, so the text is Unparsed,
// never read as something it is not.
func classifyLong(sql string) Result {
	stmts, err := pg_query.SplitWithScanner(sql, false)
	if err != nil {
		return unparsed(err) // an unterminated literal, say
	}
	var out Result
	read := func(stmt string, single bool) bool {
		r, ok := fastClassifyText(stmt, nil, single)
		if !ok {
			if len(stmt) > MaxParsed {
				out = Result{TooLong: true}
				return false
			}
			r = parseClassify(stmt)
		}
		if r.Unparsed {
			if r.ParseErrorPos > 0 {
				// A position in the statement, 1-based in characters:
				// make it one in the whole text.
				r.ParseErrorPos += utf8.RuneCountInString(sql[:offsetIn(sql, stmt)])
			}
			out = r
			return false
		}
		out.Statements = append(out.Statements, r.Statements...)
		return true
	}
	end := 0 // of the statement before
	for _, stmt := range stmts {
		start := offsetIn(sql, stmt)
		// The scanner leaves out text between two ';' that holds no
		// keyword, which is no statement: read it too, for the parser to
		// refuse it with its position.
		if gap := sql[end:start]; !onlyTerminators(gap) && !read(gap, false) {
			return out
		}
		if !read(stmt, true) {
			return out
		}
		end = start + len(stmt)
	}
	if gap := sql[end:]; !onlyTerminators(gap) {
		read(gap, false)
	}
	return out
}

// onlyTerminators reports whether s holds nothing but semicolons,
// whitespace and comments.
func onlyTerminators(s string) bool {
	for i := 0; ; i++ {
		i, _ = skipComments(s, i)
		if i >= len(s) {
			return true
		}
		if s[i] != ';' {
			return false
		}
	}
}

// offsetIn is the byte offset of sub, a substring of s, in s.
func offsetIn(s, sub string) int {
	return int(uintptr(unsafe.Pointer(unsafe.StringData(sub))) - uintptr(unsafe.Pointer(unsafe.StringData(s))))
}

// bigParse is the size past which parses take turns (bigParses), so the
// memory of large trees is that of one at a time.
const bigParse = 256 << 10

var bigParses = make(chan struct{}, 1)

// parse runs PostgreSQL's parser on sql, a large text after any other
// large one being parsed.
func parse(sql string) (*pg_query.ParseResult, error) {
	if len(sql) > bigParse {
		bigParses <- struct{}{}
		defer func() { <-bigParses }()
	}
	return pg_query.Parse(sql)
}

// parseClassify classifies sql with PostgreSQL's parser.
func parseClassify(sql string) Result {
	tree, err := parse(sql)
	if err != nil {
		return unparsed(err)
	}
	if len(tree.Stmts) == 0 {
		return Result{}
	}
	stmts := make([]Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		kind, tag, noTxn := classifyNode(raw.Stmt)
		stmts = append(stmts, Statement{
			Text:       stmtText(sql, raw.StmtLocation, raw.StmtLen),
			Kind:       kind,
			NoTxn:      noTxn,
			Tag:        tag,
			Setting:    settingName(raw.Stmt),
			Savepoint:  raw.Stmt.GetTransactionStmt().GetSavepointName(),
			Deallocate: raw.Stmt.GetDeallocateStmt().GetName(),
			Bound:      bound(raw.Stmt),
		})
	}
	return Result{Statements: stmts}
}

// unparsed is the Result of text PostgreSQL's parser or scanner refused.
func unparsed(err error) Result {
	r := Result{Unparsed: true, ParseError: err.Error()}
	var pe *parser.Error
	if errors.As(err, &pe) {
		r.ParseError, r.ParseErrorPos = pe.Message, pe.Cursorpos
	}
	return r
}

// stmtText cuts one statement out of sql by the parser's byte offsets; a
// length of 0 means "to the end of the input".
func stmtText(sql string, loc, n int32) string {
	start := min(max(int(loc), 0), len(sql))
	end := len(sql)
	if n > 0 {
		end = min(start+int(n), len(sql))
	}
	return trimLeadingComments(sql[start:end])
}

// trimLeadingComments drops the whitespace and comments that PostgreSQL
// attributes to the front of a statement (e.g. a comment after the previous
// statement's semicolon), and trailing whitespace.
func trimLeadingComments(s string) string {
	if i, ok := skipComments(s, 0); ok {
		s = s[i:]
	}
	return strings.TrimRight(s, pgSpace)
}

// pgSpace is PostgreSQL's lexer whitespace. strings.TrimSpace would also trim
// Unicode spaces such as U+00A0, which PostgreSQL treats as identifier bytes.
const pgSpace = " \t\n\r\f\v"

// HasParams reports whether a statement's text refers to a bind parameter
// ($1) outside its literals, comments and quoted names. Text that does not
// lex reports false (the parser refuses it anyway).
func HasParams(text string) bool {
	if !strings.Contains(text, "$") {
		return false
	}
	res, err := pg_query.Scan(text)
	if err != nil {
		return false
	}
	for _, tok := range res.Tokens {
		if tok.Token == pg_query.Token_PARAM {
			return true
		}
	}
	return false
}
