// Package classify splits SQL text into statements and classifies each one
// (DDL, DML, COPY, transaction control, settings, other) so the wire proxy can
// refuse DDL on tenant databases, capture committed DDL in tenant workspaces as
// blueprint versions, refuse COPY, follow transaction boundaries, and know
// which statements cannot run inside a transaction block (Statement.NoTxn).
//
// Classify (classify.go) first refuses text that would make PostgreSQL's lexer
// quadratic (complexity.go), then tries a cgo-free fast path (fastpath.go) for
// a single statement whose kind is provably fixed by its first keyword, and
// otherwise runs the real PostgreSQL parser (pg_query_go) and classifies each
// raw statement by its top-level node type (nodes.go, tags.go). Text that the
// parser rejects is Unparsed, with the parser's error: the proxy refuses it
// with that error rather than forward what it could not check. Per-statement Text comes from the parser's byte
// offsets, so it is exact and can be replayed as a blueprint version.
//
// REFRESH MATERIALIZED VIEW, DO, CALL and maintenance (VACUUM, ANALYZE,
// CLUSTER, REINDEX, LOCK) are Other, not DDL: they change no schema object, or
// (DO, CALL) the backend role is the guard. TRUNCATE is DML; CREATE TABLE AS
// and SELECT … INTO are DDL.
//
// Limits. The parser lexes with PostgreSQL's defaults: standard_conforming_strings
// on and UTF-8 text. A session that turns standard_conforming_strings off, or
// uses a client_encoding whose multibyte characters can end in a backslash
// (SJIS, BIG5, GBK…), can make the server split a string differently than this
// package does; the proxy must pin both on tenant databases. The parser is
// PostgreSQL 17's: syntax only another server version reads (a newer one's
// additions, or a name an older one takes that 17 reserves, such as
// system_user) is Unparsed, and refused.
package classify
