#!/bin/bash
# Container health check without curl: one HTTP/1.0 GET to 127.0.0.1 over bash's
# /dev/tcp. Exits 0 on a 2xx status and 1 otherwise (refused, no answer within 5 s, or
# any other status); Docker reserves other exit codes. The image ships it as
# /usr/local/bin/healthcheck; docker-compose.yml uses it, Kubernetes probes use httpGet.
#
#   healthcheck PORT [PATH]      PATH defaults to /health
set -u
# A server that closes early fails the write (status 1) instead of killing the script
# with SIGPIPE.
trap '' PIPE

port="${1:-}"
path="${2:-/health}"

fail() {
    echo "GET ${path} on port ${port}: $*" >&2
    exit 1
}

[[ "${port}" =~ ^[0-9]+$ ]] || fail "usage: healthcheck PORT [PATH]"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || fail "cannot connect"
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "${path}" >&3 \
    || fail "cannot send the request"
IFS=' ' read -r -t 5 _version status _reason <&3 || fail "no answer within 5 s"
[[ "${status}" == 2?? ]] || fail "status ${status}"
