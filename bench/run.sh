#!/usr/bin/env bash
# bench/run.sh: direct PostgreSQL, tdb and PgBouncer (session mode) on this machine, run
# alternately in one run with pgbench, so the ratios compare like with like.
#
#   bash bench/run.sh            # full run (about 15 minutes)
#   DUR=3 ROUNDS=1 CLIENTS="1 32" IDLE_CONNS=100 bash bench/run.sh   # a quick one
#   TDB_FLAGS=--goroutine-relay bash bench/run.sh           # tdb without its event loop
#   PROXY_CPU=1 bash bench/run.sh   # each proxy on CPU 1 alone, PostgreSQL and pgbench on
#                                   # the others; pgbench rows only, BENCHMARKS.md untouched
#   ROWS_ONLY=1 TDB_FLAGS="--relay-loops 2" bash bench/run.sh   # pgbench rows only, on
#                                   # shared cores, BENCHMARKS.md untouched (A/B of tdb flags)
#
# Every pgbench row runs ROUNDS times against each target, the order of the three turning
# each round so no target always runs first or last; the table shows the median tps and the
# smallest and largest tdb/PgBouncer ratio among the rounds.
# Prints a table of tps and ratios and writes bench/out/results.tsv (medians),
# bench/out/rounds.tsv (every run) and BENCHMARKS.md.
# TLS is off on every side (loopback) for pgbench; -C uses SCRAM on every side. The idle
# connection test holds IDLE_CONNS TLS client connections open on tdb and on PgBouncer and
# reports the memory each costs the proxy process.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-6}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-"1 32 256"}
MODES=${MODES:-"simple extended prepared"}
SCALE=${SCALE:-10}
IDLE_CONNS=${IDLE_CONNS:-400}
OUT=bench/out${PROXY_CPU:+/pinned}${ROWS_ONLY:+/rows} # a pinned or rows-only run keeps its own tables
mkdir -p "$OUT"

for t in pgbench psql pgbouncer; do
  command -v "$t" >/dev/null || { echo "bench: $t is not installed (apt-get install postgresql-client pgbouncer)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/tdb-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  pkill -f "pgbouncer $WORK/pgbouncer.ini" 2>/dev/null || true # under runuser it is runuser's child
  sleep 2
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== build"
go build -o "$WORK/tdb" ./cmd/tdb
TDB_PORT=$(freeport); HTTP_PORT=$(freeport); BOUNCER_PORT=$(freeport)

echo "== start tdb dev (its own PostgreSQL)"
# PostgreSQL's max_connections: the 256-client rows' sessions pooled in both proxies, then
# IDLE_CONNS clients through each proxy, each with a session of its own.
PG_MAX_CONNS=$((2 * IDLE_CONNS + 700))
"$WORK/tdb" dev ${TDB_FLAGS:-} --pg-max-connections "$PG_MAX_CONNS" --data-dir "$WORK/dev" --wire-addr "127.0.0.1:$TDB_PORT" --http-addr "127.0.0.1:$HTTP_PORT" >"$WORK/dev.log" 2>&1 &
TDB_PID=$!
PIDS+=("$TDB_PID")
for _ in $(seq 1 120); do [ -f "$WORK/dev/env" ] && break; sleep 0.5; done
[ -f "$WORK/dev/env" ] || { cat "$WORK/dev.log"; echo "bench: tdb dev did not start" >&2; exit 1; }
set -a; . "$WORK/dev/env"; set +a

PGPW=$(python3 -c 'import sys,urllib.parse as u; print(u.urlparse(sys.argv[1]).password)' "$TDB_BACKEND_URL")
PGPORT=$(python3 -c 'import sys,urllib.parse as u; print(u.urlparse(sys.argv[1]).port)' "$TDB_BACKEND_URL")
TDB_URL="postgresql://$TDB_PROJECT_ID:$TDB_API_KEY@127.0.0.1:$TDB_PORT/controlplane_workspace?sslmode=disable"
# The workspace's name on the backend server: random, so ask the session.
PHYS=$(psql "$TDB_URL" -XAtqc "SELECT current_database()")
DIRECT_URL="postgresql://postgres:$PGPW@127.0.0.1:$PGPORT/$PHYS?sslmode=disable"
BOUNCER_URL="postgresql://postgres:$PGPW@127.0.0.1:$BOUNCER_PORT/bench?sslmode=disable"
# Both proxies reach PostgreSQL the same way: tdb dev registers its PostgreSQL by its Unix
# socket when it has one, so PgBouncer gets that socket too (else both use TCP).
BACKEND_HOST=127.0.0.1
[ -S "$WORK/dev/postgres/run/.s.PGSQL.$PGPORT" ] && BACKEND_HOST="$WORK/dev/postgres/run"
echo "proxies reach PostgreSQL at $BACKEND_HOST"

echo "== start PgBouncer $(pgbouncer --version | head -1 | awk '{print $2}') (session mode, SCRAM)"
cat >"$WORK/pgbouncer.ini" <<INI
[databases]
bench = host=$BACKEND_HOST port=$PGPORT dbname=$PHYS user=postgres password=$PGPW
bench_idle = host=$BACKEND_HOST port=$PGPORT dbname=$PHYS user=postgres password=$PGPW
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = session
admin_users = postgres
max_client_conn = $((IDLE_CONNS + 2000))
default_pool_size = $((IDLE_CONNS > 500 ? IDLE_CONNS + 100 : 600))
client_tls_sslmode = allow
client_tls_cert_file = $WORK/bouncer.crt
client_tls_key_file = $WORK/bouncer.key
server_idle_timeout = 1800
client_idle_timeout = 1800
logfile = $WORK/pgbouncer.log
INI
echo "\"postgres\" \"$PGPW\"" >"$WORK/userlist.txt"
cp "$WORK/dev/node/tls/tls.crt" "$WORK/bouncer.crt"; cp "$WORK/dev/node/tls/tls.key" "$WORK/bouncer.key"
chown -R postgres "$WORK/pgbouncer.ini" "$WORK/userlist.txt" "$WORK/bouncer.crt" "$WORK/bouncer.key" 2>/dev/null || true
touch "$WORK/pgbouncer.log"; chown postgres "$WORK/pgbouncer.log" 2>/dev/null || true
# PgBouncer gets the open-file limit tdb has: runuser starts it with the default soft limit
# (1024), and the idle rows need a descriptor per client and per server connection.
AS_POSTGRES=()
[ "$(id -u)" = 0 ] && AS_POSTGRES=(runuser -u postgres --)
"${AS_POSTGRES[@]}" sh -c 'ulimit -n "$(ulimit -Hn)" && exec pgbouncer "$1"' sh "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.out" 2>&1 &
BOUNCER_PID=$!
PIDS+=("$BOUNCER_PID")
for _ in $(seq 1 40); do psql "$BOUNCER_URL" -XAtqc 'select 1' >/dev/null 2>&1 && break; sleep 0.25; done
# bouncer_pid: pgbouncer runs under runuser when root; measure pgbouncer itself.
bouncer_pid=$(pgrep -f "pgbouncer $WORK/pgbouncer.ini" | while read -r p; do [ "$(cat /proc/"$p"/comm)" = pgbouncer ] && echo "$p"; done | head -1)
[ -n "$bouncer_pid" ] || { cat "$WORK/pgbouncer.out" "$WORK/pgbouncer.log"; echo "bench: PgBouncer did not start" >&2; exit 1; }
echo "PgBouncer open-file limit: $(awk '/Max open files/ {print $4}' "/proc/$bouncer_pid/limits")"

# PROXY_CPU: the proxies get that CPU to themselves (every thread of tdb, PgBouncer), and
# PostgreSQL (its postmaster, so the backends it forks too) and pgbench the others: how the
# proxies compare when neither waits behind PostgreSQL for a core. tdb/direct means little
# then (direct has one core fewer); tdb/PgBouncer and the CPU columns are the point.
PGBENCH=(pgbench)
if [ -n "${PROXY_CPU:-}" ]; then
  OTHER_CPUS=$(python3 -c 'import os,sys; p=int(sys.argv[1]); c=sorted(os.sched_getaffinity(0)); assert p in c and len(c) > 1, "PROXY_CPU must be one of several CPUs"; print(",".join(str(i) for i in c if i != p))' "$PROXY_CPU")
  PM_PID=$(head -1 "$WORK/dev/postgres/data/postmaster.pid")
  for p in "$PM_PID" $(pgrep -P "$PM_PID"); do taskset -a -p -c "$OTHER_CPUS" "$p" >/dev/null; done
  taskset -a -p -c "$PROXY_CPU" "$TDB_PID" >/dev/null
  taskset -a -p -c "$PROXY_CPU" "$bouncer_pid" >/dev/null
  PGBENCH=(taskset -c "$OTHER_CPUS" pgbench)
  echo "proxies on CPU $PROXY_CPU; PostgreSQL and pgbench on CPUs $OTHER_CPUS"
fi

echo "== pgbench -i -I dtGvp -s $SCALE through tdb (control workspace; server-side data generation, COPY is refused)"
pgbench -i -I dtGvp -q -s "$SCALE" "$TDB_URL" >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log"; exit 1; }

if [ -z "${PROXY_CPU:-}${ROWS_ONLY:-}" ]; then
  echo "== memory per idle TLS client connection: $IDLE_CONNS connections, each after one SELECT 1"
  # These rows run before the pgbench rows, while the proxies have relayed next to nothing
  # (pgbench's initialization, through tdb): a process that has freed memory reuses it, and
  # its RSS then says little (after the pgbench rows tdb's gave -1 to 19 KiB per client). Each client costs the proxy its backend session
  # too: tdb logs them in with a key of role read (a backend role of its own, so a pool of its
  # own), PgBouncer through a database entry of its own (bench_idle), killed afterwards so its
  # server connections do not stay open through the pgbench rows.
  IDLE_KEY=$(curl -fsS -X POST -H "Authorization: Bearer $TDB_ADMIN_KEY" -H "X-Tdb-Project: $TDB_PROJECT_ID" \
    -d '{"name":"bench-idle","role":"read","scope_type":"project"}' "http://127.0.0.1:$HTTP_PORT/v1/apikeys" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
  # No per-IP connection limit for them (500 by default): IDLE_CONNS may ask for more.
  curl -fsS -X PATCH -H "Authorization: Bearer $TDB_ADMIN_KEY" -d '{"max_conns_per_ip":0}' \
    "http://127.0.0.1:$HTTP_PORT/v1/cluster/settings" >/dev/null
  go build -o "$WORK/idleconns" ./bench/idleconns
  IDLE_TDB=$("$WORK/idleconns" -n "$IDLE_CONNS" -pid "$TDB_PID" -metrics "http://127.0.0.1:$HTTP_PORT/metrics" \
    -gc-url "http://127.0.0.1:$HTTP_PORT/debug/pprof/heap?gc=1" -gc-key "$TDB_ADMIN_KEY" \
    -url "postgresql://$TDB_PROJECT_ID:$IDLE_KEY@127.0.0.1:$TDB_PORT/controlplane_workspace?sslmode=require") ||
    { echo "bench: idle connections through tdb failed" >&2; exit 1; }
  IDLE_BOUNCER=$("$WORK/idleconns" -n "$IDLE_CONNS" -pid "$bouncer_pid" \
    -url "postgresql://postgres:$PGPW@127.0.0.1:$BOUNCER_PORT/bench_idle?sslmode=require") ||
    { tail -5 "$WORK/pgbouncer.log"; echo "bench: idle connections through PgBouncer failed" >&2; exit 1; }
  echo "tdb: $IDLE_TDB (n, RSS KiB, Go heap KiB, Go stacks KiB per connection; RSS KiB per connection of the second half)"
  echo "PgBouncer: $IDLE_BOUNCER (n, RSS KiB, -, -; RSS KiB per connection of the second half)"
  psql "postgresql://postgres:$PGPW@127.0.0.1:$BOUNCER_PORT/pgbouncer?sslmode=disable" -XAtqc "KILL bench_idle" >/dev/null
fi

# cpu_ticks pid: user+system clock ticks the process has used (0 without a pid).
cpu_ticks() { [ -n "${1:-}" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
run() { # target-url pid pgbench-args... -> "tps cpu": tps (excluding connection time) and
  # the CPU the process pid (the proxy) used per transaction, in microseconds ("-" without one)
  local url=$1 pid=$2; shift 2
  local out c0 c1 n
  c0=$(cpu_ticks "$pid")
  out=$("${PGBENCH[@]}" -n "$@" -T "$DUR" "$url" 2>&1) || { echo "pgbench failed: $out" >&2; echo "0 -"; return; }
  c1=$(cpu_ticks "$pid")
  n=$(echo "$out" | awk -F': ' '/^number of transactions actually processed/ {print $2; exit}')
  if ! echo "$out" | grep -q '^tps'; then
    echo "pgbench gave no tps: $out" >&2; echo "0 -"; return
  fi
  echo "$(echo "$out" | awk -F'= ' '/^tps/ {split($2,a," "); print a[1]; exit}')" \
    "$([ -n "$pid" ] && [ "${n:-0}" -gt 0 ] && awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}' || echo -)"
}

printf "test\tdirect\ttdb\tpgbouncer\ttdb_cpu_us\tpgbouncer_cpu_us\n" >"$OUT/results.tsv"
printf "test\tround\tdirect\ttdb\tpgbouncer\ttdb_cpu_us\tpgbouncer_cpu_us\n" >"$OUT/rounds.tsv"
median() { printf "%s\n" "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
row() { # name args...: ROUNDS runs against each target, the order turning each round
  local name=$1; shift
  local r k target
  local -a order=(direct tdb pgbouncer) ds=() ts=() bs=() tc=() bc=() res
  local -A url=([direct]=$DIRECT_URL [tdb]=$TDB_URL [pgbouncer]=$BOUNCER_URL) pid=([direct]="" [tdb]=$TDB_PID [pgbouncer]=$bouncer_pid) got cpu
  for r in $(seq 1 "$ROUNDS"); do
    for k in 0 1 2; do
      target=${order[$(((k + r - 1) % 3))]}
      read -r -a res <<<"$(run "${url[$target]}" "${pid[$target]}" "$@")"
      got[$target]=${res[0]}; cpu[$target]=${res[1]}
    done
    ds+=("${got[direct]}"); ts+=("${got[tdb]}"); bs+=("${got[pgbouncer]}"); tc+=("${cpu[tdb]}"); bc+=("${cpu[pgbouncer]}")
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$name" "$r" "${got[direct]}" "${got[tdb]}" "${got[pgbouncer]}" "${cpu[tdb]}" "${cpu[pgbouncer]}" >>"$OUT/rounds.tsv"
  done
  printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$name" "$(median "${ds[@]}")" "$(median "${ts[@]}")" "$(median "${bs[@]}")" \
    "$(median "${tc[@]}")" "$(median "${bc[@]}")" | tee -a "$OUT/results.tsv"
}

# The share of CPU time the hypervisor gave to other guests during the pgbench rows (steal,
# /proc/stat): on a shared virtual machine runs with more of it are slower and vary more.
cpu_stat() { awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t; exit}' /proc/stat; }
read -r STEAL0 TOTAL0 <<<"$(cpu_stat)"
echo "== select-only (-S), ${DUR}s per run, $ROUNDS rounds"
for c in $CLIENTS; do
  for m in $MODES; do
    row "-S -M $m -c $c" -S -M "$m" -c "$c" -j 2
  done
done
echo "== new connection per transaction (-C), SCRAM on every side"
row "-S -C -c 8" -S -C -c 8 -j 2
read -r STEAL1 TOTAL1 <<<"$(cpu_stat)"
STEAL_PCT=$(awk -v s=$((STEAL1 - STEAL0)) -v t=$((TOTAL1 - TOTAL0)) 'BEGIN {printf "%.1f", (t > 0 ? 100 * s / t : 0)}')
echo "CPU steal during the pgbench rows: $STEAL_PCT%"
if [ -n "${PROXY_CPU:-}${ROWS_ONLY:-}" ]; then
  python3 - "$OUT/results.tsv" "${PROXY_CPU:-}" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
if sys.argv[2]:
    print("\nproxies on a CPU of their own (tdb/direct means little: direct has one core fewer)")
print(f"{'test':24} {'tdb/PgBouncer':>14} {'tdb/direct':>11} {'CPU per txn, tdb / PgBouncer':>30}")
for t, d, tdb, b, tc, bc in rows:
    print(f"{t:24} {float(tdb)/float(b):14.2f} {float(tdb)/float(d):11.2f} {tc + ' us / ' + bc + ' us':>30}")
PY
  exit 0
fi

echo "== RSS while streaming a 1 GB result through tdb"
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
echo 5 >"/proc/$TDB_PID/clear_refs" 2>/dev/null || true # reset the peak (VmHWM) left by the runs above
before=$(rss "$TDB_PID")
psql "$TDB_URL" -XAtqc "SELECT repeat('x', 1000) FROM generate_series(1, 1000000)" >/dev/null
after=$(hwm "$TDB_PID")
RSS_GROWTH_MB=$(( (after - before) / 1024 ))
echo "tdb RSS before ${before} KiB, peak after ${after} KiB: growth ${RSS_GROWTH_MB} MiB"

# Lazy attach: a second tdb dev (its own PostgreSQL) with --lazy-backend-attach, and clients
# that only log in, from several loopback addresses. The count is bounded by the open-file
# limit of this machine (one descriptor per connection on each side).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
LAZY_CONNS=${LAZY_CONNS:-50000}
if [ "$FD_LIMIT" != unlimited ] && [ "$LAZY_CONNS" -gt $((FD_LIMIT - 2000)) ]; then
  echo "bench: the open-file limit is $FD_LIMIT: $LAZY_CONNS connections do not fit, measuring $((FD_LIMIT - 2000))"
  LAZY_CONNS=$((FD_LIMIT - 2000))
fi
echo "== memory per idle TLS client with --lazy-backend-attach: $LAZY_CONNS connections that only log in"
LAZY_PORT=$(freeport); LAZY_HTTP=$(freeport)
"$WORK/tdb" dev --lazy-backend-attach --data-dir "$WORK/lazy" --wire-addr "127.0.0.1:$LAZY_PORT" --http-addr "127.0.0.1:$LAZY_HTTP" >"$WORK/lazy.log" 2>&1 &
LAZY_PID=$!
PIDS+=("$LAZY_PID")
for _ in $(seq 1 120); do [ -f "$WORK/lazy/env" ] && break; sleep 0.5; done
LAZY_ENV=$(cat "$WORK/lazy/env")
lazy_var() { echo "$LAZY_ENV" | sed -n "s/^$1=//p"; }
curl -fsS -X PATCH -H "Authorization: Bearer $(lazy_var TDB_ADMIN_KEY)" -d '{"max_conns_per_ip":0}' \
  "http://127.0.0.1:$LAZY_HTTP/v1/cluster/settings" >/dev/null
IDLE_LAZY=$("$WORK/idleconns" -connect-only -ips 8 -parallel 32 -n "$LAZY_CONNS" -pid "$LAZY_PID" \
  -metrics "http://127.0.0.1:$LAZY_HTTP/metrics" \
  -gc-url "http://127.0.0.1:$LAZY_HTTP/debug/pprof/heap?gc=1" -gc-key "$(lazy_var TDB_ADMIN_KEY)" \
  -url "postgresql://$(lazy_var TDB_PROJECT_ID):$(lazy_var TDB_API_KEY)@127.0.0.1:$LAZY_PORT/controlplane_workspace?sslmode=require")
echo "tdb --lazy-backend-attach: $IDLE_LAZY (n, RSS KiB, Go heap KiB, Go stacks KiB per connection; RSS KiB per connection of the second half)"
kill -INT "$LAZY_PID" 2>/dev/null || true

echo
python3 - "$OUT/results.tsv" "$RSS_GROWTH_MB" "$IDLE_TDB" "$IDLE_BOUNCER" "$IDLE_LAZY" "$OUT/rounds.tsv" "$DUR" "$ROUNDS" "$STEAL_PCT" <<'PY'
import sys, platform, os, datetime, subprocess
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
growth = sys.argv[2]
idle_tdb = sys.argv[3].split("\t")
idle_bouncer = sys.argv[4].split("\t")
idle_lazy = sys.argv[5].split("\t")
dur, nrounds, steal = sys.argv[7], sys.argv[8], sys.argv[9]
def f(x):
    try: return float(x)
    except: return 0.0
spread = {}  # test -> tdb/PgBouncer ratio of every round
for name, _, d, t, b, *_ in (l.rstrip("\n").split("\t") for l in list(open(sys.argv[6]))[1:]):
    if f(b):
        spread.setdefault(name, []).append(f(t) / f(b))
lines = ["| test | direct tps | tdb tps | PgBouncer tps | tdb/PgBouncer | tdb/PgBouncer, rounds | tdb/direct | proxy CPU per txn, tdb / PgBouncer |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
def us(x):
    return f"{f(x):.1f} us" if f(x) else "-"
for name, d, t, b, tc, bc in rows:
    d, t, b = f(d), f(t), f(b)
    r1 = f"{t/b:.2f}" if b else "-"
    r2 = f"{t/d:.2f}" if d else "-"
    s = spread.get(name, [])
    rr = f"{min(s):.2f}-{max(s):.2f}" if s else "-"
    lines.append(f"| `{name}` | {d:.0f} | {t:.0f} | {b:.0f} | {r1} | {rr} | {r2} | {us(tc)} / {us(bc)} |")
table = "\n".join(lines)
print(table)

def cell(v, i):
    return v[i] if len(v) > i and v[i] not in ("", "-") else "-"
idle = "\n".join([
    "| proxy | connections | RSS per connection | RSS per connection, second half | Go heap per connection | Go stacks per connection |",
    "|---|---:|---:|---:|---:|---:|",
    f"| tdb | {cell(idle_tdb, 0)} | {cell(idle_tdb, 1)} KiB | {cell(idle_tdb, 4)} KiB | {cell(idle_tdb, 2)} KiB | {cell(idle_tdb, 3)} KiB |",
    f"| PgBouncer | {cell(idle_bouncer, 0)} | {cell(idle_bouncer, 1)} KiB | {cell(idle_bouncer, 4)} KiB | - | - |",
    f"| tdb `--lazy-backend-attach`, clients that only log in | {cell(idle_lazy, 0)} | {cell(idle_lazy, 1)} KiB | {cell(idle_lazy, 4)} KiB | {cell(idle_lazy, 2)} KiB | {cell(idle_lazy, 3)} KiB |",
])
print(idle)

# A chart of each proxy's share of direct PostgreSQL's tps (mermaid, rendered by
# the usual Markdown viewers).
names = [r[0].replace("-S ", "").replace("-M ", "").replace("-c ", "c") for r in rows]
tdb_share = [f(t) / f(d) if f(d) else 0 for _, d, t, b, *_ in rows]
bouncer_share = [f(b) / f(d) if f(d) else 0 for _, d, t, b, *_ in rows]
top = max(tdb_share + bouncer_share + [1.0])
chart = "\n".join([
    "```mermaid",
    "xychart-beta",
    '    title "tps as a share of direct PostgreSQL (first bar tdb, second PgBouncer)"',
    "    x-axis [" + ", ".join(f'"{n}"' for n in names) + "]",
    f'    y-axis "share of direct" 0 --> {top:.1f}',
    "    bar [" + ", ".join(f"{v:.2f}" for v in tdb_share) + "]",
    "    bar [" + ", ".join(f"{v:.2f}" for v in bouncer_share) + "]",
    "```",
])
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
def added_us(mode):  # 1-client latency over direct PostgreSQL, in microseconds
    for name, d, t, b, *_ in rows:
        if name == f"-S -M {mode} -c 1" and f(d) and f(t) and f(b):
            return 1e6 / f(t) - 1e6 / f(d), 1e6 / f(b) - 1e6 / f(d)
    return None
cpu_pairs = [(name.split()[2], f(tc), f(bc)) for name, d, t, b, tc, bc in rows if name.endswith(" -c 32") and f(tc) and f(bc)]
cpu32 = ("In this run tdb used " + ", ".join(f"{t:.1f} us ({m})" for m, t, _ in cpu_pairs) +
         " of CPU per transaction against PgBouncer's " + ", ".join(f"{b:.1f} us" for _, _, b in cpu_pairs) +
         f": {min(t / b for _, t, b in cpu_pairs):.2f}-{max(t / b for _, t, b in cpu_pairs):.2f} times as much.") if cpu_pairs else ""
lat = [(m, added_us(m)) for m in ("simple", "extended", "prepared")]
lat = [(m, v) for m, v in lat if v]
latency = ("In the table above a single client's transaction takes, over direct PostgreSQL: " +
           "; ".join(f"{m} {t:+.0f} us through tdb, {b:+.0f} us through PgBouncer" for m, (t, b) in lat) + ".") if lat else ""
md = f"""# Benchmarks

Measured by `bash bench/run.sh` on {datetime.date.today()}: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()};
the host took {steal}% of the CPU time (steal) during the pgbench rows.
Direct PostgreSQL, tdb and PgBouncer (session mode) run on the same machine, alternately, in one run;
pgbench against each for {dur} s, {nrounds} rounds per row with the order of the three turning each
round; tps are medians of the rounds, and the rounds column gives the smallest and largest
tdb/PgBouncer ratio of a single round. TLS off on every side (loopback). Ratios > 1 favour tdb.
The last column is the CPU time (user and system, from /proc) the proxy process itself used per
transaction, the median of the rounds: what each proxy costs, which tps alone hides when
PostgreSQL and pgbench share the cores with it (lower favours tdb; with `-C` it includes the
proxy's side of each login).

{table}

{chart}

RSS growth of the tdb node while streaming a 1 GB result: {growth} MiB (peak RSS during the
stream minus RSS before it).

## Idle connections

Memory each idle TLS client connection costs the proxy process (`bench/idleconns`: open the
connections, run `SELECT 1` on each, wait, measure; the difference divided by the count; tdb
collects garbage before each measurement, and its Go heap column counts live bytes, so it is
what the connections keep). The second-half column is the RSS growth while the second half of
the connections opened, per connection of that half: what one more connection costs a process
that already holds many, without the process's own growth the first connections bring (its
collector's headroom over a larger heap, memory taken in bulk). It moves with the collector's
timing too: where the first half left its headroom resident the second half fits in it (tdb,
2026-11-27: 4.2 KiB per client in one full run, 14.4-14.6 KiB in two quick runs). tdb's Go heap
column, live bytes after a collection, is the steady measure of what a connection keeps. In
session mode every client holds a backend session, so the count is bounded by the backend's
max_connections; the PostgreSQL processes behind them are not counted here. The first two
rows run before the pgbench rows, while the proxies have relayed next to nothing, and their
clients log in where no backend session waits (tdb with a key of role read, so a backend
role and a pool of their own; PgBouncer through a database entry of its own), so both
columns include the proxy's connection to the backend. Run after the pgbench rows, tdb's
RSS column said little: its connections reused pages those runs had freed, and the runtime
returned others meanwhile (-1 to 19 KiB per client across runs on 2026-11-27, against a
live heap of 7.7-8.8 KiB). With
`--lazy-backend-attach` a client that finds no idle backend session logs in without one and
attaches one at its first message, so clients that only log in (a driver's pool warming up,
a LISTEN-less idle pool) hold no backend at all; the last row opens as many of them as this
machine's open-file limit allows (the bench asks for 50,000).

{idle}

## Notes

The relay: a node relays sessions (TLS or not) from one epoll loop on a locked thread
(`wire/evloop`) instead of a goroutine per direction; `--goroutine-relay` brings the old relay
back for comparison (`-S -c 1`, 2026-11-26: tdb/direct 0.89-0.90 with the loop against
0.47-0.51 without it; over TLS, 6.6k tps against 3.9k). {latency}

Sessions the loop hands to goroutines come back to it (2026-11-27). A message over the loop's
64 KiB buffer, a limit's cancel or the row guard's own statements move a session to a goroutine
per direction; it used to stay there for the rest of its life, so one large row put a pooled
application connection on the slower relay for good. Measured with `pgbench -f bench/largerow.sql`
(one transaction in 200 reads a 70 kB row, the others the `-S` select), `-M prepared`, the build before and after, alternating, 3 rounds: at 8 clients
(8 s rounds) 18.5-25.8k tps and 26.4-29.3 us of proxy CPU per transaction before, 25.4-26.6k
tps and 20.3-22.5 us after; at one client (6 s rounds) 6.0-6.3k tps and 78.6-82.3 us before,
7.1-8.9k tps and 40.5-50.5 us after. Plain `-S -c 8` (no large row, so no hand-over) was the
same for both builds (29.7-32.5k tps, 17.2-18.3 us).

Checks the proxy gained later that day touch the hot path: a UTF-8 check of each new statement
text, a second statement (a new random() seed) pipelined into the pool's reset, and a gate that
waits for cancels before a session is pooled. The build before them against the build after
(pgbench against a `tdb dev` of each, alternating, 6-8 s rounds): `-S -M simple -c 8` 17.3-21.5k
tps and 21.1-24.6 us of proxy CPU per transaction before, 17.1-20.8k tps and 21.0-25.6 us after
(3 rounds); `-S -M prepared -c 1` 5.6-6.2k before, 6.0-6.3k after (2 rounds); `-S -C -c 8`
173-225 tps and 585-808 us of proxy CPU per login before, 166-224 tps and 631-851 us after
(7 rounds). No difference stands out of the spread between rounds; the `-C` rows lean 5%
towards the old build (means 197 against 189 tps), which these few rounds cannot tell from
noise.

The row guard's look at a batch and the limits a session keeps (2026-11-28): with
`max_rows_per_query` set the proxy reads the statements that arrived with a batch's first
message to decide whether it needs its transaction, and a session reads the workspace's limits
again only when the replica's state changed. The bookkeeping alone, the build before against
the build after, test binaries alternating, 3 rounds of 1 s (no limits set): simple 879-906 ns
before, 865-877 ns after; extended 839-863 ns before, 857-863 ns after; prepared 727-757 ns
before, 730-742 ns after; no new allocation.

Where the time goes at 32 clients. {cpu32} (The proxy CPU column; a proxy's whole cost, which the
tps hide when PostgreSQL and pgbench share its cores.) A closer look on 2026-11-27 (`-M
extended -c 32`, CPU per process from /proc, `perf stat` and a kernel profile, the proxies
taking turns): tdb 7.9 us user and 21.4 us kernel per transaction against PgBouncer's 3.3 and
17.5. Both make 2 reads and 2 writes per transaction and no `epoll_ctl`; tdb calls
`epoll_pwait` 1.55 times (a non-blocking call before each blocking one) and switches context
1.09 times against PgBouncer's 0.74 and 0.81. In the kernel profile of either proxy more than
half the samples fall in context switches and wake-ups (`finish_task_switch`,
`_raw_spin_unlock_irqrestore`): on this 2-vCPU virtual machine waking a process on the other
CPU is the dominant cost of relaying a message, for both. tdb's user time is spread over
its own work on each message (the DDL and setting guards, statement tracking, limits, the
query log entry and its JSON line, metrics; none above 5%), which PgBouncer does not do. With
PostgreSQL and pgbench on the same two cores a proxy that reads and writes every message
once cannot be 1.2x faster than another that does the same; the target is missed by the
margin in the table. Since the first runs (one round per row, `-M prepared -c 32` at 0.81 of
PgBouncer): reads, writes and a first non-blocking `epoll_wait` as raw system calls (no
scheduler hand-off per call), the local PostgreSQL reached by its Unix socket (`tdb dev`
registers it that way; the bench gives PgBouncer the same socket), and bookkeeping without
allocation on a statement's round trip (tests keep it at zero; 2026-11-27, objects allocated
per transaction at 32 clients: simple 1.07, the new statement text the query log keeps,
extended 0.04, prepared 0.06, against 3.01 and 2.02 before for simple and extended). That
bookkeeping, measured alone (`go test -run XXX -bench RoundTrip -benchmem ./actors`, 2026-11-27):
about 1.2 us per transaction simple, 1.25 us extended (1.6 us before a session learned to
classify and guard a repeated statement text once) and 1.0-1.15 us prepared, without
allocation but for the simple protocol's new text; with a workspace's query_timeout_ms set,
0.25 us more (0.6 us and two allocations before the session kept one statement timer). The
checks added on 2026-11-27 (the UTF-8 check of each new text, text the parser cannot read refused,
the capture's exact tracking, which sessions that record no DDL skip) against the build before
them, test binaries alternating, 4 rounds of 1 s (2026-11-28): simple 1.13-1.23 us before,
1.26-1.42 us after; prepared 0.97-1.08 us before, 1.02-1.30 us after; no new allocation. Tried and not
kept: spinning before `epoll_wait`, a real-time policy for the loop thread, pinning the node
to one CPU, skipping the non-blocking `epoll_wait` when the loop was idle, an unlocked loop
goroutine waiting for its epoll set through Go's own poller (-4% tps and +40% CPU per
transaction at one client, -4% at 32; with two such loops, 2026-11-27, 0 to -7% at 32 clients
and +40-58% CPU per login with `-C`), a third Go thread (`--procs 3`: no change at one client,
+10% CPU per login with `-C`), a 100 us scheduler slice for the loop thread (`sched_setattr`,
so the backends it wakes do not preempt it: it then rarely waited in `epoll_wait`, but tps
moved -17 to +12% at 32 clients, -5 to -12% at 256, -5 to 0% at one client), and giving the
loop's P back to the scheduler before it blocks in `epoll_wait` (the runtime's
`entersyscallblock`, 2026-11-27): with every other P idle the runtime then wakes a thread to
watch the network, so at one client context switches went from 2.15 to 4.3-5.9 per
transaction and CPU per transaction up 35-50%, and CPU per login with `-C` up 10-40%.

A core of its own does not help a proxy here. `PROXY_CPU=1 bash bench/run.sh` (2026-11-27)
put each proxy alone on CPU 1 and PostgreSQL and pgbench on CPU 0: tdb/PgBouncer 0.90-1.18
at one client, 0.91-1.01 at 32, 0.98-1.20 at 256 and 1.95 with `-C`, but both proxies ran
at a third to a half of their shared-core throughput (3.6-5.0k tps at one client, about
280 us per transaction), while pgbench and PostgreSQL alone on CPU 0 made 29-46k: on this
virtual machine a wake-up on the other vCPU costs tens of microseconds, and with the proxy
on its own core every message crosses. Sharing the cores, the scheduler often keeps a
client, the proxy and a backend on one vCPU; where it does not is most of the spread
between rounds.

At 256 clients the machine keeps 0.14-0.20 of a core idle under tdb against 0.02 with direct
PostgreSQL: the single loop is at moments the only runnable thread. `--relay-loops 2` turns
that into throughput, -4 to +30% at 256 clients and -7 to +22% at 32 (15 of 21 alternating
rounds up), but costs `-C` 4-22% of its tps and doubles tdb's CPU per login (a loop waiting
in `epoll_wait` keeps its P until the runtime's monitor takes it back, which the monitor
does every 20 us while login goroutines wait for a P: 20 of its wake-ups per login against
0.7), so one loop stays the default on a machine this small. There the loop thread is one runnable thread among 256 busy backends and
waits its turn behind them: `--relay-nice -10` (the loops' threads only) gave +12% at `-S -M
prepared -c 256` over six alternating rounds, +2% at 32 and -4% at 1 client (its wake-ups
preempt the backend it just served), so it is a flag, off by default (and off in this table). `-C` is bounded by the client: libpq's SCRAM key derivation in pgbench
takes 1.65 of the 2 cores during the tdb run, tdb 0.16. Its CPU column is each proxy's side
of a login and its reset: PgBouncer derives the SCRAM keys from the plain-text password of its
auth file on every login, tdb checks the proof against a stored verifier and reuses a pooled
backend session. tdb's keys are random, so a lower SCRAM iteration count would cost them no
strength and spare the client most of its work, but pgjdbc refuses fewer than 4096
iterations; tdb keeps PostgreSQL's 4096.

On idle connections: while the loop relays a session no goroutine waits for it, so the
"Go stacks" column is near zero; what remains is the session, the TLS record layer (after
the handshake, a TLS 1.3 session keeps its two ciphers and a 512-byte read buffer;
crypto/tls had kept about 8 KiB of buffers and handshake state per client: 9.3-9.4 KiB of
live heap per idle client before, 5.5-6.1 KiB after, 1500 clients, 2026-11-27) and the
backend session's bookkeeping; frame buffers are
borrowed only while data flows (a backend session's read buffer goes back while the loop
relays it and while it waits in the pool), and the sessions of a role share one map of the
parameters their backend reported. With `--goroutine-relay` the
same connections cost 20.1 KiB of heap spans and 12.1 KiB of stacks each (2026-11-26, 450
connections; runs before 2026-11-27 counted the heap's spans in use, which also count the
free slots in them, so that column varied with what ran before: 7.8-14.4 KiB across runs of
the 400-client row, against 8.7-8.8 KiB live). The RSS column is the growth of the process's resident memory: the Go runtime
keeps freed pages for a while, so it runs above the Go columns, and below them when the
connections reuse pages freed by the runs before.
"""
open("BENCHMARKS.md", "w").write(md)
PY
