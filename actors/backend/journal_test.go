package backend_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"tdb/actors/backend"
)

// JournalVersions groups rows into transactions by capture id, and tells
// each row's statement from its message's text: several statements of one
// message, a message spanning transactions, a prepared statement run twice
// in the same microsecond, and the DO block that creates a type. Where the
// rows and the message's DDL do not match, it refuses to guess.
func TestJournalVersions(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	row := func(id, query, tag string, received time.Time) backend.JournalRow {
		return backend.JournalRow{CaptureID: id, Query: query, Tag: tag, Received: received, TimeZone: "UTC", DateStyle: "ISO, MDY", IntervalStyle: "postgres"}
	}
	multi := "CREATE TABLE a (id int); INSERT INTO a VALUES (1); CREATE INDEX a_id ON a (id)"
	split := "CREATE TABLE b (id int); COMMIT; CREATE TABLE c (id int)"
	savepoint := "BEGIN; SAVEPOINT s; CREATE TABLE x (id int); ROLLBACK TO s; CREATE TABLE y (id int); COMMIT"
	enum := "DO 'BEGIN CREATE TYPE mood AS ENUM (''ok''); EXCEPTION WHEN duplicate_object THEN null; END'"
	rows := []backend.JournalRow{
		row("1@1", multi, "CREATE TABLE", at),
		row("1@1", multi, "CREATE INDEX", at),
		row("2@2", split, "CREATE TABLE", at.Add(time.Second)),
		row("3@3", split, "CREATE TABLE", at.Add(time.Second)),
		row("4@4", "ALTER TABLE a ADD COLUMN IF NOT EXISTS n int", "ALTER TABLE", at.Add(2*time.Second)),
		row("4@4", "ALTER TABLE a ADD COLUMN IF NOT EXISTS n int", "ALTER TABLE", at.Add(2*time.Second)),
		row("5@5", savepoint, "CREATE TABLE", at.Add(3*time.Second)),
		row("6@6", "SELECT make_table()", "CREATE TABLE", at.Add(4*time.Second)),
		row("7@7", enum, "CREATE TYPE", at.Add(5*time.Second)),
		row("8@8", "CREATE VIEW v AS SELECT 1", "CREATE TABLE", at.Add(6*time.Second)),
	}
	var got []string
	for _, v := range backend.JournalVersions(rows) {
		s := v.CaptureID + ": " + strings.Join(v.Statements, " | ")
		if v.Err != nil {
			s = v.CaptureID + ": error"
		}
		got = append(got, s)
	}
	want := []string{
		"1@1: CREATE TABLE a (id int) | CREATE INDEX a_id ON a (id)",
		"2@2: CREATE TABLE b (id int)",
		"3@3: CREATE TABLE c (id int)",
		"4@4: ALTER TABLE a ADD COLUMN IF NOT EXISTS n int | ALTER TABLE a ADD COLUMN IF NOT EXISTS n int",
		"5@5: error",
		"6@6: error",
		"7@7: " + enum,
		"8@8: error",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("versions:\n got %q\nwant %q", got, want)
	}
}

func TestValidCaptureID(t *testing.T) {
	for id, ok := range map[string]bool{
		"123@1795978760532846": true, "1@-5": true,
		"": false, "1@": false, "@1": false, "1@1'": false, "1@1, '2@2": false, "x@1": false,
	} {
		if backend.ValidCaptureID(id) != ok {
			t.Errorf("ValidCaptureID(%q) = %v", id, !ok)
		}
	}
	if got := backend.ForgetJournalSQL([]string{"1@2", "bad'", "3@4"}); got != "tdb_guard.forget_journal(ARRAY['1@2', '3@4']::pg_catalog.text[])" {
		t.Errorf("ForgetJournalSQL: %s", got)
	}
}
