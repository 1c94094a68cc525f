#!/usr/bin/env bash
# Writes builtins.txt: the names of PostgreSQL's built-in functions (schema
# pg_catalog) none of whose forms is volatile. A stable or immutable function
# cannot write to the database, so a SELECT that calls only these (and the
# volatile ones MayCallWritingFunction lists by name) writes nothing.
# Usage: PGHOST=… PGPORT=… PGUSER=… bash wire/classify/builtins.sh (any
# database of the PostgreSQL release the proxy is tested against).
set -euo pipefail
cd "$(dirname "$0")"
{
  echo "# Built-in functions none of whose forms is volatile, from $(psql -AtXc 'show server_version' postgres | cut -d' ' -f1)."
  echo "# Made by builtins.sh; do not edit."
  psql -AtX postgres -c "
    SELECT proname FROM pg_proc
    WHERE pronamespace = 'pg_catalog'::regnamespace
    GROUP BY proname HAVING bool_and(provolatile <> 'v')
    ORDER BY proname COLLATE \"C\""
} > builtins.txt
