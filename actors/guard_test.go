package actors

import "testing"

func TestSettingGuard(t *testing.T) {
	tests := []struct {
		name, sql string
		refused   bool
	}{
		{"scs off", "SET standard_conforming_strings = off", true},
		{"scs to false", "set standard_conforming_strings to 'false'", true},
		{"scs via set_config", "SELECT set_config('standard_conforming_strings', 'off', false)", true},
		{"scs reset", "RESET standard_conforming_strings", true},
		{"scs on", "SET standard_conforming_strings = on", false},
		{"show scs", "SHOW standard_conforming_strings", false},
		{"sjis", "SET client_encoding = 'SJIS'", true},
		{"names big5", "SET NAMES 'BIG5'", true},
		{"gbk via set_config", "select set_config('client_encoding','GBK',false)", true},
		{"utf8", "SET client_encoding TO 'UTF8'", false},
		{"latin1", "SET client_encoding TO 'LATIN1'", false},
		{"plain select", "SELECT 'big5 is a name' AS encoding_note", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := settingGuard(tc.sql) != nil
			if got != tc.refused {
				t.Fatalf("%q refused=%v, want %v", tc.sql, got, tc.refused)
			}
		})
	}
}

func TestStartupGuard(t *testing.T) {
	for _, tc := range []struct {
		params  map[string]string
		refused bool
	}{
		{map[string]string{"client_encoding": "UTF8", "application_name": "x"}, false},
		{map[string]string{"client_encoding": "SJIS"}, true},
		{map[string]string{"standard_conforming_strings": "off"}, true},
		{map[string]string{"options": "-c standard_conforming_strings=off"}, true},
		{map[string]string{"options": "-c search_path=a"}, false},
		// PostgreSQL reads a dash in an option's name as an underscore, and
		// takes -cname=value and --name=value too.
		{map[string]string{"options": "-c standard-conforming-strings=off"}, true},
		{map[string]string{"options": "-c client-encoding=sjis"}, true},
		{map[string]string{"options": "-cstandard_conforming_strings=off"}, true},
		{map[string]string{"options": "--standard-conforming-strings=off"}, true},
		{map[string]string{"options": "-c search_path=a --Client-Encoding=BIG5"}, true},
		{map[string]string{"options": `-c application_name=a\ b -c standard_conforming_strings=off`}, true},
		{map[string]string{"OPTIONS": "-c standard_conforming_strings=off"}, true},
		{map[string]string{"options": "-c standard-conforming-strings=on -c client-encoding=UTF8"}, false},
		{map[string]string{"options": `-c application_name=x\ -c\ standard_conforming_strings=off`}, false}, // one escaped value
	} {
		if got := StartupGuard(tc.params) != nil; got != tc.refused {
			t.Errorf("%v refused=%v, want %v", tc.params, got, tc.refused)
		}
	}
}

func TestNamesGuardedSetting(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 1", false},
		{"SET standard_conforming_strings = off", true},
		{"set STANDARD_CONFORMING_STRINGS to on", true},
		{"SET client_encoding = 'SJIS'", true},
		{"select 'EnCoDiNg'", true},
		{"conformin", false}, // a prefix at the end of the text
		{"encodin", false},
		{"cc ee conforminG", true},
		{"#onforming", false}, // '#' | 0x20 is '#': only C/c and E/e start a look
		{"", false},
	} {
		if got := namesGuardedSetting(tc.sql); got != tc.want {
			t.Errorf("namesGuardedSetting(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
}

// BenchmarkNamesGuardedSetting is the guard's screen on pgbench's
// statement, the text every plain query pays for.
func BenchmarkNamesGuardedSetting(b *testing.B) {
	sql := "SELECT abalance FROM pgbench_accounts WHERE aid = 1234567;"
	for b.Loop() {
		if namesGuardedSetting(sql) {
			b.Fatal("matched")
		}
	}
}

func TestHasWord(t *testing.T) {
	for _, tc := range []struct {
		text, word string
		want       bool
	}{
		{"SELECT set_config('a', 'b', false)", "set_config", true},
		{"select SET_CONFIG('a')", "set_config", true},
		{"select my_set_config('a')", "set_config", false},
		{"select set_configs('a')", "set_config", false},
		{"DELETE FROM t RETURNING id", "returning", true},
		{"SELECT returning_customers FROM t", "returning", false},
		{"UPDATE t SET updated_at = now()", "update", true},
		{"SELECT updated_at FROM t", "update", false},
		{"x", "update", false},
	} {
		if got := hasWord(tc.text, tc.word); got != tc.want {
			t.Errorf("hasWord(%q, %q) = %v, want %v", tc.text, tc.word, got, tc.want)
		}
	}
}

func TestNamesSetConfig(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"SELECT set_config('a', 'b', false)", true},
		{"select SET_CONFIG('a')", true},
		{"set_config('a')", true},
		{"select pg_catalog.set_config('a', 'b', true)", true},
		{"select my_set_config('a')", false},
		{"select set_configs('a')", false},
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 1", false},
		{"_", false},
		{"set_conf", false},
	} {
		if got := namesSetConfig(tc.sql); got != tc.want {
			t.Errorf("namesSetConfig(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
}
