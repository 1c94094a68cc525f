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
//     admin (its captured DDL would run as the owner everywhere);
//   - settings that make PostgreSQL read statement text differently from the
//     proxy's parser (standard_conforming_strings off, client encodings whose
//     multibyte characters may contain quote or backslash bytes).
var roleTags = map[string]bool{
	"CREATE ROLE": true, "ALTER ROLE": true, "DROP ROLE": true, "GRANT ROLE": true,
	"REVOKE ROLE": true, "DROP OWNED": true, "REASSIGN OWNED": true,
}

var privilegeTags = map[string]bool{"GRANT": true, "REVOKE": true, "ALTER DEFAULT PRIVILEGES": true}

// unsafeEncodings are client encodings PostgreSQL accepts whose multibyte
// characters can contain the bytes of ' or \ (client-only encodings).
var unsafeEncodings = regexp.MustCompile(`(?i)\b(sjis|shift_jis|mskanji|big5|gbk|gb18030|uhc|johab|win932|win936|win949|win950|windows932|windows936|windows949|windows950|cp932|cp936|cp949|cp950)\b`)

var scsOn = regexp.MustCompile(`(?i)standard_conforming_strings\s*(=|\bto\b|,)\s*'?(on|true|yes|1)\b`)

// guard returns the refusal for a classified statement text, or nil.
func (s *session) guard(sql string, r classify.Result) *wire.PGError {
	for _, st := range r.Statements {
		if roleTags[st.Tag] {
			return wire.NewError("ERROR", "42501", "%s is not allowed through the proxy: roles are managed by tdb", st.Tag)
		}
		if s.captures() && st.Kind == classify.DDL {
			if s.login.role != fsm.RoleAdmin {
				return wire.NewError("ERROR", "42501", "DDL in a workspace needs a key with role admin")
			}
			if privilegeTags[st.Tag] {
				return wire.NewError("ERROR", "42501", "%s is not allowed in a tenant workspace: tenant privileges are managed by tdb", st.Tag)
			}
		}
	}
	isSet := false
	for _, st := range r.Statements {
		isSet = isSet || st.Kind == classify.Set
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
// statements differently from the proxy's parser.
func StartupGuard(params map[string]string) error {
	for k, v := range params {
		switch strings.ToLower(k) {
		case "standard_conforming_strings":
			if !scsOn.MatchString("standard_conforming_strings=" + v) {
				return wire.Fatalf("42501", "standard_conforming_strings must be on through the proxy")
			}
		case "client_encoding":
			if unsafeEncodings.MatchString(v) {
				return wire.Fatalf("42501", "client encoding %q is not supported through the proxy; use UTF8", v)
			}
		case "options":
			if err := settingGuard("set " + v); err != nil {
				return wire.Fatalf(err.Code, "%s", err.Message)
			}
		}
	}
	return nil
}
