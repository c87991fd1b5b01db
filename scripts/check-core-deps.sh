#!/usr/bin/env bash
# orchestrator-core holds the domain and must stay free of I/O: none of these crates
# may appear in its dependency tree (normal and build dependencies).
set -euo pipefail
forbidden='^(tokio|diesel|diesel-async|actix-web|actix-rt|reqwest|rskafka|hyper|mio) '
tree=$(cargo tree -p orchestrator-core -e normal,build --prefix none --no-dedupe)
if found=$(grep -E "$forbidden" <<<"$tree"); then
    echo "orchestrator-core must not depend on I/O crates, found:" >&2
    echo "$found" >&2
    exit 1
fi
echo "orchestrator-core: no I/O dependencies"
