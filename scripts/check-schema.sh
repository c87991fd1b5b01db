#!/usr/bin/env bash
# Applies the migrations to an empty database, prints the diesel schema from it and
# compares it with crates/store/src/schema.rs (or, with --write, replaces that file).
# Needs the diesel CLI (`cargo install diesel_cli --no-default-features --features postgres`).
set -euo pipefail
cd "$(dirname "$0")/.."

DIESEL=${DIESEL:-diesel}
admin=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db="orch_schema_check_$$"
url="${admin%/*}/$db"

# Without diesel.toml: its print_schema section makes `migration run` rewrite schema.rs
# itself, and the comparison below would then always pass.
no_config=$(mktemp)
generated=$(mktemp)
psql "$admin" -qc "CREATE DATABASE $db"
trap 'psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; rm -f "$no_config" "$generated"' EXIT
"$DIESEL" migration run --database-url "$url" --config-file "$no_config" \
    --migration-dir migrations >/dev/null
"$DIESEL" print-schema --database-url "$url" > "$generated"
if [[ "${1:-}" == "--write" ]]; then
    cp "$generated" crates/store/src/schema.rs
    echo "wrote crates/store/src/schema.rs"
elif ! diff -u crates/store/src/schema.rs "$generated"; then
    echo "crates/store/src/schema.rs is out of date: run 'make schema'" >&2
    exit 1
else
    echo "schema.rs matches the migrations"
fi
