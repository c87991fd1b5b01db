#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 (trust auth for "postgres"):
# uses a running one, else starts the local Debian cluster, else installs Debian's
# postgresql package and starts it. Safe to run again.
#
#   scripts/ensure-postgres.sh --client   only installs psql (postgresql-client) if it is
#                                         missing, for a server elsewhere (`make run`)
set -euo pipefail

if [[ ${1:-} == --client ]]; then
    command -v psql >/dev/null && exit 0
    echo "ensure-postgres: installing Debian's postgresql-client for psql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql-client >/dev/null
    exit 0
fi

HOST=127.0.0.1
PORT=5432

ready() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; }

if command -v pg_isready >/dev/null && ready; then
    exit 0
fi

if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "ensure-postgres: installing Debian's postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n1)
conf=/etc/postgresql/$version/main
# Tests connect over TCP as "postgres" without a password, like the CI machines.
if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
fi
echo "ensure-postgres: starting cluster $version/main" >&2
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true

for _ in $(seq 1 60); do
    if ready; then
        exit 0
    fi
    sleep 0.5
done
echo "ensure-postgres: PostgreSQL did not come up on $HOST:$PORT" >&2
exit 1
