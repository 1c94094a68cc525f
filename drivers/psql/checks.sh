#!/usr/bin/env bash
# psql through tdb (sslmode=require). Run by TestDrivers (drivers/README.md)
# with the TDB_* variables set; prints one line per check, exits 1 on any failure.
set -u
fails=0
ok() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }
# run URL ARGS...: psql without ~/.psqlrc, stopping at the first error, terse
# output, SQLSTATEs in error messages; stdout and stderr together.
run() { psql "$1" -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "${@:2}" 2>&1; }

# The seed's example: psql "postgresql://…@…:5432/myapp__wayne?sslmode=require".
out=$(psql "$TDB_URL" -c "SELECT id, name, balance FROM accounts" 2>&1)
if [[ $? -eq 0 && $out == *"| Bob  | 2000.00"* ]]; then ok "seed example: psql \"\$URL?sslmode=require\" -c \"SELECT id, name, balance FROM accounts\""
else fail "seed example" "$out"; fi

out=$(run "$TDB_URL" -c '\conninfo')
if [[ $out == *"SSL connection"* ]]; then ok "the session is TLS (\\conninfo: ${out##*SSL connection })"
else fail "TLS" "$out"; fi

# Server-side prepared statements with parameters, reused 200 times in one session.
sql="PREPARE ins(text, text, numeric) AS INSERT INTO accounts (name, email, balance) VALUES (\$1, \$2, \$3);
PREPARE bal(text) AS SELECT balance FROM accounts WHERE email = \$1;"
for i in $(seq 1 200); do sql+="
EXECUTE ins('p$i', 'p$i@test.com', $i);"; done
sql+="
EXECUTE bal('p200@test.com');
SELECT count(*) FROM pg_prepared_statements;"
out=$(run "$TDB_URL" <<<"$sql")
if [[ $? -eq 0 && $(tail -n 2 <<<"$out" | head -n 1) == "200.00" && $(tail -n 1 <<<"$out") == "2" ]]; then
  ok "PREPARE/EXECUTE with parameters, 200 executions"
else fail "PREPARE/EXECUTE" "$(tail -n 5 <<<"$out")"; fi

out=$(run "$TDB_URL" <<'SQL'
SELECT count(*) FROM accounts;
BEGIN;
INSERT INTO accounts (name, email) VALUES ('tx', 'tx@test.com');
DELETE FROM accounts WHERE name = 'Bob';
ROLLBACK;
SELECT count(*) FROM accounts;
SQL
)
first=$(head -n 1 <<<"$out"); last=$(tail -n 1 <<<"$out")
if [[ -n $first && $first == "$last" && $out != *ERROR* ]]; then ok "transaction rolled back leaves nothing ($first rows before and after)"
else fail "rollback" "$out"; fi

# FETCH_COUNT makes psql read through a cursor (DECLARE … FETCH 1000), not all at once.
out=$(run "$TDB_URL" -v FETCH_COUNT=1000 -c "SELECT i, repeat('x', 20) FROM generate_series(1, $TDB_ROWS) i" | awk -F'|' '{n++; s+=$1} END {printf "%d %.0f\n", n, s}')
want="$TDB_ROWS $((TDB_ROWS * (TDB_ROWS + 1) / 2))"
if [[ $out == "$want" ]]; then ok "large result read in batches (FETCH_COUNT=1000, $TDB_ROWS rows)"
else fail "large result" "got rows/sum '$out', want '$want'"; fi

out=$(run "$TDB_URL_WORKSPACE" -c "INSERT INTO accounts (name, email) VALUES ('ws', 'psql-ws@test.com')" -c "SELECT current_user")
if [[ $? -eq 0 && $out == *_write ]]; then ok "workspace key (scope workspace [myapp], role write) on a tenant of myapp: INSERT"
else fail "workspace key" "$out"; fi

out=$(run "$TDB_URL_READ" -c "SELECT count(*) FROM accounts")
if [[ $? -ne 0 ]]; then fail "read key SELECT" "$out"; fi
out=$(run "$TDB_URL_READ" -c "INSERT INTO accounts (name, email) VALUES ('r', 'psql-r@test.com')")
if [[ $out == *"ERROR:  42501: $TDB_MSG_READ_INSERT"* ]]; then ok "read key: INSERT fails 42501 $TDB_MSG_READ_INSERT"
else fail "read key INSERT" "$out"; fi

out=$(run "$TDB_URL_PROJECT" -c "SELECT 1")
if [[ $out == *"FATAL:  $TDB_MSG_PROJECT_SCOPED"* ]]; then ok "project key refused on a tenant: $TDB_MSG_PROJECT_SCOPED"
else fail "project key" "$out"; fi

out=$(psql "$TDB_URL" -X -At -v VERBOSITY=verbose -c "CREATE TABLE evil (id int)" -c "SELECT 'still usable'" 2>&1)
if [[ $out == *"ERROR:  42501: $TDB_MSG_DDL"* && $out == *"still usable"* ]]; then ok "DDL refused on a tenant: $TDB_MSG_DDL; the session stays usable"
else fail "DDL" "$out"; fi

out=$(run "$TDB_URL" -c "SET statement_timeout = '300ms'" -c "SELECT pg_sleep(30)")
if [[ $out == *"ERROR:  57014: canceling statement due to statement timeout"* ]]; then ok "statement_timeout cancels pg_sleep (57014)"
else fail "statement_timeout" "$out"; fi

# Ctrl-C: psql sends a CancelRequest with the BackendKeyData the proxy issued.
start=$SECONDS
psql "$TDB_URL" -X -At -v VERBOSITY=verbose -c "SELECT pg_sleep(30)" >"${TMPDIR:-/tmp}/tdb-psql-cancel.$$" 2>&1 &
pid=$!
sleep 1
kill -INT "$pid"
wait "$pid"
out=$(cat "${TMPDIR:-/tmp}/tdb-psql-cancel.$$"); rm -f "${TMPDIR:-/tmp}/tdb-psql-cancel.$$"
if [[ $out == *"57014: canceling statement due to user request"* && $((SECONDS - start)) -lt 15 ]]; then ok "Ctrl-C cancels pg_sleep (CancelRequest, 57014)"
else fail "Ctrl-C cancel" "$out"; fi

if [[ $fails -gt 0 ]]; then echo "psql: $fails check(s) failed"; exit 1; fi
echo "psql: all checks passed"
