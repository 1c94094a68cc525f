#!/usr/bin/env bash
# The test command: every package's tests against real PostgreSQL servers the
# tests start themselves, then short fuzz runs of the protocol parsers and the
# HTTP API.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -timeout 30m ./...
# The packages where sessions, loops and the raft state are shared between
# goroutines, again under the race detector (about two minutes on 2 cores).
go test -race -count=1 -timeout 20m ./actors/... ./wire/... ./querylog ./fsm ./node
# A chaos run: the Procfile's three nodes and backend under kill -9, SIGSTOP
# and partitions with load, DDL in a tenant workspace and deployments among
# it; exits non-zero on any lost write, divergence, non-linearizable
# history, stale login, ban mismatch, or DDL that committed in the
# workspace and is not in its blueprint.
go run ./chaos run --duration "${CHAOS_DURATION:-60s}" --seed "${CHAOS_SEED:-1}" --ops capture,deploy --out "${TMPDIR:-/tmp}/chaos"
# Fuzz budgets are execution counts, not durations: with a duration, Go 1.26's
# fuzz coordinator can fail a target with "context deadline exceeded" at the
# deadline when a worker is mid-call (go.dev/issue/75804), with no input at fault.
# A third argument is a target's own budget, for targets slower per input
# (FuzzSessionMessages runs each input through a node and its backend, at
# about 50 a second); FUZZTIME, when set, is every target's budget.
fuzz() { go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZTIME:-${3:-100000x}}" "$2"; }
fuzz FuzzStartup ./wire/
fuzz FuzzStartupTLS ./wire/
fuzz FuzzFrameReader ./wire/
fuzz FuzzFrameReaderAllocation ./wire/
fuzz FuzzMessageParsers ./wire/
fuzz FuzzErrorResponseRoundTrip ./wire/
fuzz FuzzSCRAMClientFirst ./wire/scram/
fuzz FuzzSCRAMClientFinal ./wire/scram/
fuzz FuzzClassify ./wire/classify/
fuzz FuzzRecords ./wire/tls13/
fuzz FuzzProxyHeader ./actors/
fuzz FuzzSessionMessages ./node/ 500x   # about 20 s with the build
fuzz FuzzReadBackup ./fsm/
fuzz FuzzAppendLine ./querylog/
fuzz FuzzHTTPAPI ./httpapi/ 20000x   # about 1,000 requests a second
