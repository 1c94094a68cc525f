package actors

import (
	"regexp"
	"strings"

	"tdb/fsm"
	"tdb/wire"
	"tdb/wire/classify"
)

// Statements the proxy refuses beyond the DDL guard, because the native role
// model depends on them never running through it:
//   - role statements (ALTER ROLE CURRENT_USER PASSWORD … would lock every
//     key of that role out, or give its holder a login that outlives the key);
//   - in a tenant workspace, privilege statements, which deployments would
//     replay as the owner on every tenant, and any DDL by a key that is not
//     admin (its captured DDL would run as the owner everywhere), and
//     statements about databases, tablespaces or the server;
//   - settings that make PostgreSQL read statement text differently from the
//     proxy's parser (standard_conforming_strings off, client encodings whose
//     multibyte characters may contain quote or backslash bytes).
var roleTags = map[string]bool{
	"CREATE ROLE": true, "ALTER ROLE": true, "DROP ROLE": true, "GRANT ROLE": true,
	"REVOKE ROLE": true, "DROP OWNED": true, "REASSIGN OWNED": true,
}

var privilegeTags = map[string]bool{"GRANT": true, "REVOKE": true, "ALTER DEFAULT PRIVILEGES": true}

// serverTags are statements about the server rather than one database's
// schema: a blueprint version of one would run against the tenant's server
// or name the workspace's own database, on every tenant.
var serverTags = map[string]bool{
	"CREATE DATABASE": true, "DROP DATABASE": true, "ALTER DATABASE": true,
	"CREATE TABLESPACE": true, "DROP TABLESPACE": true, "ALTER TABLESPACE": true, "ALTER SYSTEM": true,
}

// unsafeEncodings are client encodings PostgreSQL accepts whose multibyte
// characters can contain the bytes of ' or \ (client-only encodings).
var unsafeEncodings = regexp.MustCompile(`(?i)\b(sjis|shift_jis|mskanji|big5|gbk|gb18030|uhc|johab|win932|win936|win949|win950|windows932|windows936|windows949|windows950|cp932|cp936|cp949|cp950)\b`)

var scsOn = regexp.MustCompile(`(?i)standard_conforming_strings\s*(=|\bto\b|,)\s*'?(on|true|yes|1)\b`)

// captureTypeBlocks marks, in a tenant workspace, the DO statements that
// only create a type unless it exists as DDL (classify.CreatesTypeIfMissing): they
// are then captured, and need an admin key, like the CREATE TYPE they run.
func (s *session) captureTypeBlocks(r *classify.Result) {
	if !s.captures() {
		return
	}
	for i := range r.Statements {
		if st := &r.Statements[i]; runsAnyStatement(*st) && classify.CreatesTypeIfMissing(*st) {
			st.Kind = classify.DDL
		}
	}
}

// guard returns the refusal for a classified statement text, or nil.
func (s *session) guard(sql string, r classify.Result) *wire.PGError {
	for i, st := range r.Statements {
		if roleTags[st.Tag] {
			return wire.NewError("ERROR", "42501", "%s is not allowed through the proxy: roles are managed by tdb", st.Tag)
		}
		if st.Kind == classify.Other && st.Tag == "NOTIFY" && s.login.role == fsm.RoleRead {
			// NOTIFY takes no privilege: the read role's grants cannot
			// keep it from acting on the database's listeners.
			return wire.NewError("ERROR", "42501", "NOTIFY needs a key with role write or admin")
		}
		if s.captures() && runsAnyStatement(st) {
			return wire.NewError("ERROR", "42501",
				"%s is not allowed in a tenant workspace: DDL it runs could not be captured as a blueprint version", st.Tag)
		}
		if s.captures() && st.Kind == classify.PrepareTxn {
			return wire.NewError("ERROR", "0A000", "PREPARE TRANSACTION is not allowed in a tenant workspace: DDL in it would commit without being captured as a blueprint version")
		}
		if s.captures() && st.Kind != classify.DDL && st.Bound != "" {
			return wire.NewError("ERROR", "0A000", "%s is not allowed in a tenant workspace: %s", st.Tag, st.Bound)
		}
		if s.captures() && st.Kind == classify.DDL {
			if s.login.role != fsm.RoleAdmin {
				return wire.NewError("ERROR", "42501", "DDL in a workspace needs a key with role admin")
			}
			if st.Bound != "" {
				return wire.NewError("ERROR", "0A000", "%s is not allowed in a tenant workspace: %s", st.Tag, st.Bound)
			}
			if s.otherEncoding.Load() {
				return wire.NewError("ERROR", "0A000", "DDL is not allowed in a tenant workspace while client_encoding is not UTF8: the blueprint version holds the text as UTF-8").
					WithHint("SET client_encoding = 'UTF8'.")
			}
			if changesParserSettings(r) {
				return wire.NewError("ERROR", "0A000", "DDL is not allowed in a tenant workspace in the same query as a change of client_encoding, standard_conforming_strings, TimeZone, DateStyle or IntervalStyle: send it on its own")
			}
			if s.revertsSettingsBefore(r, i) {
				return wire.NewError("ERROR", "0A000", "DDL is not allowed in a tenant workspace after a COMMIT, ROLLBACK or ROLLBACK TO of an open transaction in the same query: TimeZone, DateStyle and IntervalStyle may change there unseen").
					WithHint("Send the DDL on its own.")
			}
			if s.settingsChangedInTx() {
				return wire.NewError("ERROR", "0A000", "DDL is not allowed in a tenant workspace after a change of TimeZone, DateStyle or IntervalStyle in a transaction that already holds DDL: a blueprint version runs with one set of them").
					WithHint("COMMIT first, then send the DDL.")
			}
			if privilegeTags[st.Tag] {
				return wire.NewError("ERROR", "42501", "%s is not allowed in a tenant workspace: tenant privileges are managed by tdb", st.Tag)
			}
			if serverTags[st.Tag] {
				return wire.NewError("ERROR", "42501", "%s is not allowed in a tenant workspace: a blueprint holds the schema of one database", st.Tag)
			}
		}
	}
	isSet := false
	for _, st := range r.Statements {
		isSet = isSet || st.Kind == classify.Set
		// The parser decoded the name (quotes, U& escapes): it is what the
		// backend will set.
		switch {
		case st.Setting == "standard_conforming_strings" && !scsOn.MatchString(st.Text):
			return wire.NewError("ERROR", "42501", "standard_conforming_strings cannot be changed through the proxy")
		case st.Setting == "client_encoding" && unsafeEncodings.MatchString(st.Text):
			return wire.NewError("ERROR", "42501", "this client encoding is not supported through the proxy; use UTF8")
		}
	}
	// Cheap screen first: the hot path sees plain DML, which names neither.
	if isSet || namesGuardedSetting(sql) {
		return settingGuard(sql)
	}
	return nil
}

// namesGuardedSetting reports whether s contains "conforming" or "encoding"
// in any ASCII case: one pass over the text, without allocating, that only
// looks closer at a 'c' or an 'e'.
func namesGuardedSetting(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] | 0x20 { // 'C' and 'c' give 'c', 'E' and 'e' give 'e', nothing else does
		case 'c':
			if hasFoldAt(s, i, "conforming") {
				return true
			}
		case 'e':
			if hasFoldAt(s, i, "encoding") {
				return true
			}
		}
	}
	return false
}

// hasFoldAt reports whether s holds the lower-case ASCII word sub at i,
// ignoring ASCII case.
func hasFoldAt(s string, i int, sub string) bool {
	if len(s)-i < len(sub) {
		return false
	}
	for j := 0; j < len(sub); j++ {
		c := s[i+j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != sub[j] {
			return false
		}
	}
	return true
}

// settingGuard refuses changes to the settings that keep the proxy's parser
// and PostgreSQL's in agreement, by SET, SET NAMES or set_config().
func settingGuard(sql string) *wire.PGError {
	low := strings.ToLower(sql)
	if strings.Contains(low, "standard_conforming_strings") && !scsOn.MatchString(sql) &&
		(strings.Contains(low, "set") || strings.Contains(low, "reset")) {
		return wire.NewError("ERROR", "42501", "standard_conforming_strings cannot be changed through the proxy")
	}
	if (strings.Contains(low, "client_encoding") || strings.Contains(low, "names")) && unsafeEncodings.MatchString(sql) {
		return wire.NewError("ERROR", "42501", "this client encoding is not supported through the proxy; use UTF8")
	}
	return nil
}

// StartupGuard refuses startup parameters that would make the backend read
// statements differently from the proxy's parser: directly, or as settings
// inside options (read the way PostgreSQL reads them, see optionSettings).
func StartupGuard(params map[string]string) error {
	for k, v := range params {
		if strings.EqualFold(k, "options") {
			for _, kv := range optionSettings(v) {
				if err := parserSettingRefusal(kv[0], kv[1]); err != nil {
					return err
				}
			}
			continue
		}
		if err := parserSettingRefusal(k, v); err != nil {
			return err
		}
	}
	return nil
}

// parserSettingRefusal is the FATAL for a setting, given at startup or
// reported by the backend, that would make the backend read statement
// text differently from the proxy's parser; nil when it would not.
func parserSettingRefusal(name, value string) *wire.PGError {
	switch strings.ToLower(name) {
	case "standard_conforming_strings":
		if !scsOn.MatchString("standard_conforming_strings=" + value) {
			return wire.NewError("FATAL", "42501", "standard_conforming_strings must be on through the proxy")
		}
	case "client_encoding":
		if unsafeEncodings.MatchString(value) {
			return wire.NewError("FATAL", "42501", "client encoding %q is not supported through the proxy; use UTF8", value)
		}
	}
	return nil
}

// optionSettings returns the settings an options startup parameter gives,
// as name/value pairs with the names as PostgreSQL reads them: the words are
// split at unescaped white space (a backslash escapes the next byte), and a
// setting is "-c name=value", "-cname=value" or "--name=value", where every
// dash in the name stands for an underscore.
func optionSettings(opts string) [][2]string {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(opts); i++ {
		c := opts[i]
		switch {
		case c == '\\' && i+1 < len(opts):
			i++
			w.WriteByte(opts[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	var out [][2]string
	for i := 0; i < len(words); i++ {
		var arg string
		switch word := words[i]; {
		case word == "-c" || word == "--":
			if i+1 >= len(words) {
				continue
			}
			i++
			arg = words[i]
		case strings.HasPrefix(word, "--"), strings.HasPrefix(word, "-c"):
			arg = word[2:]
		default:
			continue
		}
		name, value, _ := strings.Cut(arg, "=")
		out = append(out, [2]string{strings.ReplaceAll(name, "-", "_"), value})
	}
	return out
}

// reportedSetting checks a setting the backend reports (ParameterStatus)
// after a statement changed it: whatever way the statement found around the
// text guard (a computed set_config name, a DO block), a backend that now
// reads statement text differently from the proxy's parser must not get
// another one. It returns the FATAL that ends the session, or nil.
func reportedSetting(body []byte) *wire.PGError {
	name, value, ok := parameterStatus(body)
	if !ok {
		return nil
	}
	return parserSettingRefusal(name, value)
}

// mayChangeSettings reports whether a statement text could change a setting
// the backend reads statement text with: a SET or RESET of one of them (or
// of all), a DO block or CALL (which can run any SET), a set_config call,
// or text the proxy's parser could not read. The client's next statement
// text then reaches the backend only after this one's ReadyForQuery, so a
// change is seen (reportedSetting) before the backend parses anything else.
// In a capturing session the settings a blueprint version carries count
// too (ddlSetting), so that the next DDL is recorded with their new values.
func mayChangeSettings(sql string, r classify.Result, captures bool) bool {
	for i := range r.Statements {
		st := &r.Statements[i]
		switch {
		case st.Kind == classify.Set && (parserSetting(st.Setting) || captures && ddlSetting(st.Setting)), discardAll(*st):
			return true
		case runsAnyStatement(*st):
			return true
		}
	}
	return r.Unparsed || namesSetConfig(sql)
}

// changesParserSettings reports whether a statement of r other than DDL may
// change a setting the backend reads statement text with, or one a
// blueprint version carries (a SET or RESET of one, a set_config call): DDL
// after it in the same text would reach the backend before the proxy sees
// the change. DDL itself may name set_config (a function body) without
// running it.
func changesParserSettings(r classify.Result) bool {
	for _, st := range r.Statements {
		if st.Kind == classify.Set && (parserSetting(st.Setting) || ddlSetting(st.Setting)) || discardAll(st) ||
			st.Kind != classify.DDL && namesSetConfig(st.Text) {
			return true
		}
	}
	return false
}

// runsAnyStatement reports whether a statement runs statements of its own
// that the proxy does not see: a DO block, or a procedure CALL.
func runsAnyStatement(st classify.Statement) bool {
	return st.Kind == classify.Other && (st.Tag == "DO" || st.Tag == "CALL")
}

// discardAll reports whether a statement is DISCARD ALL, which resets every
// setting as RESET ALL does.
func discardAll(st classify.Statement) bool {
	return st.Kind == classify.Other && st.Tag == "DISCARD" && st.NoTxn
}

// ddlSetting reports whether a SET or RESET of name may change what the
// text of DDL means (fsm.SessionSettings): a captured blueprint version
// carries their values to tenants.
func ddlSetting(name string) bool {
	switch name {
	case "timezone", "datestyle", "intervalstyle":
		return true
	}
	return false
}

// parserSetting reports whether a SET or RESET of name may change how the
// backend reads statement text.
func parserSetting(name string) bool {
	switch name {
	case "standard_conforming_strings", "client_encoding", "all", "":
		return true
	}
	return false
}

// namesSetConfig reports whether sql holds the word set_config in any ASCII
// case. It looks only around underscores, which a fast byte search finds.
func namesSetConfig(sql string) bool {
	for i := 0; ; {
		j := strings.IndexByte(sql[i:], '_')
		if j < 0 {
			return false
		}
		if at := i + j - len("set"); at >= 0 && wordAt(sql, at, "set_config") {
			return true
		}
		i += j + 1
	}
}

// unparsedRefusal is the error for (UTF-8) text the proxy's parser cannot
// read. Such text is not sent: the proxy cannot tell what the server would
// run (its guards, the DDL capture and the role-statement refusal all work
// on the parsed statements), and a server of another major version may
// read it. It is the parser's own syntax error, as the server would give it.
func unparsedRefusal(r classify.Result) *wire.PGError {
	e := wire.NewError("ERROR", "42601", "%s", r.ParseError)
	e.Position = r.ParseErrorPos
	return e
}

// isUTF8 reports whether a client_encoding value names UTF8 (PostgreSQL
// reports "UTF8"; a startup parameter may spell it otherwise).
func isUTF8(enc string) bool {
	switch strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(enc), "-", "")) {
	case "UTF8", "UNICODE", "":
		return true
	}
	return false
}

// notUTF8 is the refusal of statement text that is not UTF-8: the parser
// reads UTF-8, and a session in another encoding (LATIN1) could have the
// server read what the proxy did not.
func notUTF8() *wire.PGError {
	return wire.NewError("ERROR", "22021", "statement text is not valid UTF-8").
		WithHint("The proxy reads statements as UTF-8: set client_encoding to UTF8.")
}
