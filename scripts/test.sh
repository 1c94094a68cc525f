#!/usr/bin/env bash
# The test command: every package's tests against real PostgreSQL servers the
# tests start themselves, then short fuzz runs of the protocol parsers.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -timeout 30m ./...
fuzz() { go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZTIME:-10s}" "$2"; }
fuzz FuzzStartup ./wire/
fuzz FuzzFrameReader ./wire/
fuzz FuzzSCRAMClientFirst ./wire/scram/
fuzz FuzzSCRAMClientFinal ./wire/scram/
fuzz FuzzClassify ./wire/classify/
