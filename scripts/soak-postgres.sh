#!/usr/bin/env bash
# A PostgreSQL cluster of the soak's own (`make soak`): the machine's cluster may run with
# autovacuum off (the test machines' does), and what the soak shows is whether the
# retention job's deletes leave bloat autovacuum reclaims. Debian's postgresql-common
# makes it: same version and defaults as the machine's cluster, autovacuum on, trust auth
# on loopback, its data under /var/lib/postgresql/<version>/<NAME>.
#
#   scripts/soak-postgres.sh start PORT [NAME]   (re)creates cluster NAME
#                                                (orchestrator_soak) on PORT, starts it
#   scripts/soak-postgres.sh stop [NAME]         stops it and removes it with its data
set -euo pipefail

command -v pg_createcluster >/dev/null || {
    echo "soak-postgres: needs Debian's postgresql-common (apt-get install postgresql)" >&2
    exit 1
}
version=$(ls /etc/postgresql | sort -V | tail -n1)

case ${1:-} in
start)
    port=${2:?usage: $0 start PORT [NAME]}
    NAME=${3:-orchestrator_soak}
    pg_dropcluster --stop "$version" "$NAME" >/dev/null 2>&1 || true
    pg_createcluster --quiet --start-conf manual -p "$port" \
        -o autovacuum=on -o fsync=on \
        -o synchronous_commit=on -o ssl=off \
        "$version" "$NAME" -- --auth-local=trust --auth-host=trust >/dev/null
    pg_ctlcluster --skip-systemctl-redirect "$version" "$NAME" start
    for _ in $(seq 1 60); do
        if pg_isready -q -h 127.0.0.1 -p "$port"; then
            exit 0
        fi
        sleep 0.5
    done
    echo "soak-postgres: the cluster did not come up on 127.0.0.1:$port" >&2
    exit 1
    ;;
stop)
    NAME=${2:-orchestrator_soak}
    pg_dropcluster --stop "$version" "$NAME"
    ;;
*)
    echo "usage: $0 start PORT [NAME] | stop [NAME]" >&2
    exit 2
    ;;
esac
