#!/usr/bin/env bash
# The whole stack on this machine, without Docker: PostgreSQL, a Kafka-protocol broker
# (Tansu), the three mock services, the API in Kafka mode and WORKERS workers.
#
#   scripts/stack.sh run      build, start what is not running yet, wait until healthy
#   scripts/stack.sh stop     stop what `run` started (and only that)
#   scripts/stack.sh status   what runs, where
#   scripts/stack.sh db       create DATABASE_URL's database if missing and migrate it
#                             (`make db`, for running the binaries by hand)
#
# State lives in RUN_DIR (default .run/ at the repository root): logs/<component>.log,
# pids/<component>.pid ("PID STARTTIME"), stack.env (the ports of the running stack)
# and postgres.started (the cluster `run` had to start, which `stop` stops again).
# Every port is a variable, so a second stack (a test's) can run beside the default one.
set -euo pipefail

script_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd -- "${script_dir}/.." && pwd)"

# Relative paths are taken from where the script was called, before the cd below.
absolute() { if [[ $1 == /* ]]; then echo "$1"; else echo "${PWD}/$1"; fi; }

PROFILE=${PROFILE:-debug}
WORKERS=${WORKERS:-2}
API_HOST=${API_HOST:-127.0.0.1}
API_PORT=${API_PORT:-8000}
MOCK_BASE_PORT=${MOCK_BASE_PORT:-8001}
KAFKA_PORT=${KAFKA_PORT:-9092}
WORKER_HTTP_BASE_PORT=${WORKER_HTTP_BASE_PORT:-9000}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/orchestrator}
# Seconds one component may take to become healthy, and to stop after SIGTERM. The
# stop timeout exceeds the binaries' default SHUTDOWN_TIMEOUT_SECS (30) so that a
# graceful stop is not cut short.
START_TIMEOUT=${START_TIMEOUT:-90}
STOP_TIMEOUT=${STOP_TIMEOUT:-40}
# SKIP_BUILD=1 uses the binaries in BIN_DIR as they are (tests, which built them).
SKIP_BUILD=${SKIP_BUILD:-0}
BIN_DIR="$(absolute "${BIN_DIR:-${CARGO_TARGET_DIR:-${repo_root}/target}/${PROFILE}}")"
CARGO=${CARGO:-cargo}
RUN_DIR="$(absolute "${RUN_DIR:-${repo_root}/.run}")"
cd "${repo_root}"

readonly MOCK_SERVICES=(revenue rebates specialty)
readonly HOST=127.0.0.1

log() { echo "stack: $*" >&2; }
die() { log "$*"; exit 1; }

is_port_number() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0 && $1 < 65536)); }

check_settings() {
    if ! [[ ${WORKERS} =~ ^[0-9]+$ ]] || ((WORKERS < 1)); then
        die "WORKERS must be a positive number, not '${WORKERS}'"
    fi
    local var
    for var in API_PORT MOCK_BASE_PORT KAFKA_PORT WORKER_HTTP_BASE_PORT; do
        is_port_number "${!var}" || die "${var} must be a port number, not '${!var}'"
    done
    ((MOCK_BASE_PORT + 2 < 65536 && WORKER_HTTP_BASE_PORT + WORKERS - 1 < 65536)) \
        || die "MOCK_BASE_PORT or WORKER_HTTP_BASE_PORT leaves no room for every component"
    [[ ${START_TIMEOUT} =~ ^[0-9]+$ && ${STOP_TIMEOUT} =~ ^[0-9]+$ ]] \
        || die "START_TIMEOUT and STOP_TIMEOUT are whole seconds"
}

set_paths() {
    mkdir -p "${RUN_DIR}"
    # Without `..` or symlinked parts, so the paths it prints are the plain ones.
    RUN_DIR="$(cd -- "${RUN_DIR}" && pwd)"
    LOG_DIR="${RUN_DIR}/logs"
    PID_DIR="${RUN_DIR}/pids"
    STATE_FILE="${RUN_DIR}/stack.env"
    PG_MARKER="${RUN_DIR}/postgres.started"
    mkdir -p "${LOG_DIR}" "${PID_DIR}"
}

# One run/stop at a time per RUN_DIR; fd 9 must not leak into the components (see
# start_component), or they would hold the lock for as long as they live.
take_lock() {
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"${RUN_DIR}/lock"
    flock -w 30 9 || die "another scripts/stack.sh is busy with ${RUN_DIR}"
}

# ---------------------------------------------------------------------------------
# Processes. A pid file holds "PID STARTTIME" (field 22 of /proc/PID/stat): a pid that
# was reused by another process since has another start time, so it is never signalled.

start_time() {
    local stat rest fields
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest="${stat##*) }"
    read -ra fields <<<"${rest}"
    echo "${fields[19]}"
}

# Succeeds when PID runs and started at STARTTIME. A zombie counts as gone: it holds no
# port any more, and where PID 1 does not reap orphans it would never disappear.
is_ours() {
    local pid=$1 started=$2 stat rest fields
    [[ ${pid} =~ ^[0-9]+$ ]] || return 1
    stat="$(cat "/proc/${pid}/stat" 2>/dev/null)" || return 1
    rest="${stat##*) }"
    read -ra fields <<<"${rest}"
    [[ ${fields[0]} != Z && ${fields[0]} != X && ${fields[19]} == "${started}" ]]
}

pid_file() { echo "${PID_DIR}/$1.pid"; }

# Prints the pid of a component started earlier that still runs; fails (and removes
# the pid file if it is stale) otherwise.
running_pid() {
    local file pid started
    file="$(pid_file "$1")"
    [[ -f ${file} ]] || return 1
    read -r pid started _ <"${file}" || true
    if is_ours "${pid:-}" "${started:-}"; then
        echo "${pid}"
        return 0
    fi
    log "$1: removing the stale pid file (pid ${pid:-?} is gone)"
    rm -f -- "${file}"
    return 1
}

# start_component NAME [VAR=VALUE...] -- COMMAND... : runs it in a session of its own
# (Ctrl-C in the terminal that ran `make run` must not reach it), output to its log.
start_component() {
    local name=$1 log_file pid started
    shift
    log_file="${LOG_DIR}/${name}.log"
    local -a vars=()
    while [[ $1 != -- ]]; do
        vars+=("$1")
        shift
    done
    shift
    echo "=== ${name} started $(date -u +%Y-%m-%dT%H:%M:%SZ): $*" >"${log_file}"
    env "${vars[@]}" setsid "$@" </dev/null >>"${log_file}" 2>&1 9>&- &
    pid=$!
    # The start time is set at fork and survives the exec, so reading it now is exact.
    started="$(start_time "${pid}")" || started=0
    echo "${pid} ${started}" >"$(pid_file "${name}")"
    log "${name}: started (pid ${pid}), log ${log_file}"
}

# Something already listens there: a component of another stack or another program.
port_in_use() { (exec 3<>"/dev/tcp/${HOST}/$1") 2>/dev/null; }

require_free_port() {
    local name=$1 port=$2 var=$3
    if port_in_use "${port}"; then
        die "${name}: port ${port} is taken by another process; pick another with ${var}=..."
    fi
}

# HTTP status of GET http://HOST:PORT/PATH, 000 when nothing answers. Plain bash, so a
# fresh machine needs no curl for the health checks.
http_status() {
    (
        exec 3<>"/dev/tcp/${HOST}/$1" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$2" "${HOST}" "$1" >&3
        read -r -t 5 _ code _ <&3 || exit 1
        echo "${code}"
    ) 2>/dev/null || echo 000
}

# Readiness with a fallback: /ready (200 once the dependencies answer, 503 before) where
# the binary has it, else /health.
ready_status() {
    local code
    code="$(http_status "$1" /ready)"
    if [[ ${code} == 404 ]]; then
        code="$(http_status "$1" /health)"
    fi
    echo "${code}"
}

# wait_healthy NAME CHECK... : polls CHECK (a command) until it succeeds, the component
# dies, or START_TIMEOUT passes; the last two stop the run with the component's log.
wait_healthy() {
    local name=$1 deadline pid
    shift
    deadline=$((SECONDS + START_TIMEOUT))
    while true; do
        if ! pid="$(running_pid "${name}" 2>/dev/null)"; then
            fail_component "${name}" "exited before it was healthy"
        fi
        if "$@"; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            fail_component "${name}" "not healthy within ${START_TIMEOUT} s (pid ${pid}; ${LAST_CHECK:-no answer})"
        fi
        sleep 0.2
    done
}

fail_component() {
    local log_file="${LOG_DIR}/$1.log"
    log "$1 $2; log: ${log_file}"
    if [[ -f ${log_file} ]]; then
        local error_line
        # A binary that gave up prints "Error: ..." and its causes, then maybe a long
        # backtrace (RUST_BACKTRACE): the start of that is what tells why.
        error_line="$(grep -n '^Error: ' -- "${log_file}" | tail -n1 | cut -d: -f1)" || true
        echo "--- ${log_file}:" >&2
        if [[ -n ${error_line} ]]; then
            tail -n "+${error_line}" -- "${log_file}" | sed '/^Stack backtrace:/,$d' | head -n 25 >&2
        else
            tail -n 25 -- "${log_file}" >&2
        fi
        echo "---" >&2
    fi
    die "$1 did not come up; the components already started keep running: '$(stop_command)' stops them"
}

# Checks for wait_healthy; LAST_CHECK tells the timeout message what was seen.
check_tcp() {
    LAST_CHECK="nothing listens on ${HOST}:$1"
    port_in_use "$1"
}
check_http() {
    local code
    code="$(http_status "$1" "$2")"
    LAST_CHECK="GET $2 on port $1: ${code}"
    [[ ${code} == 200 ]]
}
check_ready() {
    local code
    code="$(ready_status "$1")"
    LAST_CHECK="readiness on port $1: ${code}"
    [[ ${code} == 200 ]]
}
check_log() {
    LAST_CHECK="no '$2' in ${LOG_DIR}/$1.log yet"
    grep -q -- "$2" "${LOG_DIR}/$1.log"
}

# ---------------------------------------------------------------------------------
# PostgreSQL

# Splits DATABASE_URL (postgres://[user[:password]@]host[:port]/database[?options]).
parse_database_url() {
    local base authority hostport
    base="${DATABASE_URL%%\?*}"
    DB_QUERY=""
    if [[ ${DATABASE_URL} == *\?* ]]; then
        DB_QUERY="?${DATABASE_URL#*\?}"
    fi
    authority="${base#*://}"
    DB_NAME=""
    if [[ ${authority} == */* ]]; then
        DB_NAME="${authority#*/}"
    fi
    authority="${authority%%/*}"
    DB_PREFIX="${base%"${authority}"*}${authority}"
    hostport="${authority##*@}"
    DB_HOST="${hostport%:*}"
    DB_PORT=5432
    if [[ ${hostport} == *:* ]]; then
        DB_PORT="${hostport##*:}"
    fi
    DB_HOST="${DB_HOST:-localhost}"
}

redacted_database_url() { sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#' <<<"${DATABASE_URL}"; }

postgres_answers() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "${DATABASE_URL}" 2>/dev/null
}

# Sets POSTGRES_STARTED to the version of the local cluster it had to start, if any.
ensure_postgres() {
    parse_database_url
    POSTGRES_STARTED=""
    if postgres_answers; then
        log "postgres: answers at ${DB_HOST}:${DB_PORT}, using it"
    elif [[ ${DB_HOST} =~ ^(127\.0\.0\.1|localhost|\[::1\])$ && ${DB_PORT} == 5432 ]]; then
        log "postgres: nothing answers at ${DB_HOST}:${DB_PORT}, starting the local cluster"
        "${script_dir}/ensure-postgres.sh"
        POSTGRES_STARTED="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)"
        postgres_answers || die "postgres: started cluster ${POSTGRES_STARTED}/main, but $(redacted_database_url) does not answer"
    else
        die "postgres: $(redacted_database_url) does not answer (only a local server on port 5432 is started automatically)"
    fi
    ensure_psql
    create_database
}

ensure_psql() {
    command -v psql >/dev/null 2>&1 && return 0
    log "postgres: installing Debian's postgresql-client for psql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql-client >/dev/null
}

# The binaries apply the migrations themselves, but they need the database to exist.
create_database() {
    [[ -n ${DB_NAME} ]] || return 0
    local maintenance
    for maintenance in postgres template1; do
        if psql "${DB_PREFIX}/${maintenance}${DB_QUERY}" -X -q -t -A -v ON_ERROR_STOP=1 -v db="${DB_NAME}" <<'SQL' >/dev/null; then
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
            return 0
        fi
    done
    die "postgres: could not create database ${DB_NAME} on ${DB_HOST}:${DB_PORT}"
}

stop_postgres_if_ours() {
    [[ -f ${PG_MARKER} ]] || return 0
    local version cluster
    read -r version cluster <"${PG_MARKER}"
    log "postgres: stopping cluster ${version}/${cluster}, which 'run' started"
    pg_ctlcluster --skip-systemctl-redirect "${version}" "${cluster}" stop \
        || log "postgres: pg_ctlcluster stop failed (already stopped?)"
    rm -f -- "${PG_MARKER}"
}

# ---------------------------------------------------------------------------------
# run

build() {
    if [[ ${SKIP_BUILD} == 1 ]]; then
        return 0
    fi
    local -a profile_args=()
    case "${PROFILE}" in
        debug) ;;
        release) profile_args=(--release) ;;
        *) profile_args=(--profile "${PROFILE}") ;;
    esac
    log "building the binaries (${PROFILE})"
    "${CARGO}" build --workspace --bins "${profile_args[@]}"
}

check_binaries() {
    local bin
    for bin in orchestrator-api orchestrator-worker mock-services; do
        [[ -x ${BIN_DIR}/${bin} ]] || die "${BIN_DIR}/${bin} is missing: build it (cargo build --workspace --bins)"
    done
}

settings_summary() {
    printf 'API_PORT=%s\nMOCK_BASE_PORT=%s\nKAFKA_PORT=%s\nWORKER_HTTP_BASE_PORT=%s\nBIN_DIR=%s\n' \
        "${API_PORT}" "${MOCK_BASE_PORT}" "${KAFKA_PORT}" "${WORKER_HTTP_BASE_PORT}" "${BIN_DIR}"
}

any_running() {
    local file
    for file in "${PID_DIR}"/*.pid; do
        [[ -e ${file} ]] || continue
        if running_pid "$(basename "${file}" .pid)" >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

# A stack already running from this RUN_DIR keeps its ports: starting the missing
# components elsewhere would make a stack whose parts do not find each other.
check_same_settings() {
    local current
    current="$(settings_summary)"
    if [[ -f ${STATE_FILE} ]] && any_running && [[ "$(cat "${STATE_FILE}")" != "${current}" ]]; then
        log "a stack with other settings runs from ${RUN_DIR}:"
        sed 's/^/  /' "${STATE_FILE}" >&2
        die "stop it first (make stop), or use another RUN_DIR"
    fi
    echo "${current}" >"${STATE_FILE}"
}

# Drops the pid files of components that are gone (a crash, a reboot).
sweep_stale() {
    local file
    for file in "${PID_DIR}"/*.pid; do
        [[ -e ${file} ]] || continue
        running_pid "$(basename "${file}" .pid)" >/dev/null || true
    done
}

# ensure_started NAME PORT PORT_VAR [VAR=VALUE...] -- COMMAND...
# A component that runs is left alone, unless its executable was replaced since it
# started (a rebuild): then it is restarted, or it would go on running the old code.
# The pid file is written as the process starts, so its mtime is the start time.
ensure_started() {
    local name=$1 port=$2 port_var=$3 pid executable
    shift 3
    executable="$(printf '%s\n' "$@" | sed -n '/^--$/{n;p;q}')"
    if pid="$(running_pid "${name}")"; then
        if [[ ! ${executable} -nt $(pid_file "${name}") ]]; then
            log "${name}: already running (pid ${pid})"
            return 0
        fi
        log "${name}: ${executable} is newer than the running process (pid ${pid}), restarting it"
        stop_group "${name}"
    fi
    require_free_port "${name}" "${port}" "${port_var}"
    start_component "${name}" "$@"
}

# Before anything starts, so that a taken port fails the run without leaving half a
# stack behind.
check_ports() {
    local i
    running_pid broker >/dev/null 2>&1 || require_free_port broker "${KAFKA_PORT}" KAFKA_PORT
    for i in "${!MOCK_SERVICES[@]}"; do
        running_pid "mock-${MOCK_SERVICES[i]}" >/dev/null 2>&1 \
            || require_free_port "mock-${MOCK_SERVICES[i]}" "$(mock_port "${i}")" MOCK_BASE_PORT
    done
    running_pid api >/dev/null 2>&1 || require_free_port api "${API_PORT}" API_PORT
    for ((i = 1; i <= WORKERS; i++)); do
        running_pid "worker-${i}" >/dev/null 2>&1 \
            || require_free_port "worker-${i}" "$(worker_port "${i}")" WORKER_HTTP_BASE_PORT
    done
}

mock_port() { echo $((MOCK_BASE_PORT + $1)); }
worker_port() { echo $((WORKER_HTTP_BASE_PORT + $1 - 1)); }

service_env() {
    SERVICE_ENV=(
        "DATABASE_URL=${DATABASE_URL}"
        "KAFKA_BOOTSTRAP_SERVERS=${HOST}:${KAFKA_PORT}"
        "REVENUE_SERVICE_URL=http://${HOST}:$(mock_port 0)"
        "REBATES_SERVICE_URL=http://${HOST}:$(mock_port 1)"
        "SPECIALTY_SERVICE_URL=http://${HOST}:$(mock_port 2)"
        "RUST_LOG=${RUST_LOG:-info,rskafka=warn}"
        # Log files, not a terminal: no colour escapes.
        NO_COLOR=1
    )
}

# The worker's health port is new; until the binary has it, a worker counts as healthy
# once it logs that it started.
worker_has_http_port() {
    "${BIN_DIR}/orchestrator-worker" --help 2>/dev/null | grep -q 'WORKER_HTTP_PORT'
}

cmd_run() {
    check_settings
    set_paths
    take_lock
    build
    check_binaries
    sweep_stale
    check_same_settings
    check_ports
    ensure_postgres
    # Remembered so that `stop` stops what `run` started, and leaves a server that was
    # running before alone.
    if [[ -n ${POSTGRES_STARTED} ]]; then
        echo "${POSTGRES_STARTED} main" >"${PG_MARKER}"
    fi

    local tansu
    tansu="$("${script_dir}/install-tansu.sh")"
    ensure_started broker "${KAFKA_PORT}" KAFKA_PORT -- "${tansu}" broker \
        --listener-url "tcp://${HOST}:${KAFKA_PORT}" \
        --advertised-listener-url "tcp://${HOST}:${KAFKA_PORT}" \
        --storage-engine memory://tansu/

    local i
    for i in "${!MOCK_SERVICES[@]}"; do
        ensure_started "mock-${MOCK_SERVICES[i]}" "$(mock_port "${i}")" MOCK_BASE_PORT -- \
            "${BIN_DIR}/mock-services" --host "${HOST}" --port "$(mock_port "${i}")" \
            --services "${MOCK_SERVICES[i]}"
    done
    wait_healthy broker check_tcp "${KAFKA_PORT}"
    for i in "${!MOCK_SERVICES[@]}"; do
        wait_healthy "mock-${MOCK_SERVICES[i]}" check_http "$(mock_port "${i}")" /health
    done

    service_env
    # The API first: it applies the migrations and creates the topics, so the workers
    # do not race it for them.
    ensure_started api "${API_PORT}" API_PORT "${SERVICE_ENV[@]}" \
        USE_KAFKA=true "API_HOST=${API_HOST}" "API_PORT=${API_PORT}" -- \
        "${BIN_DIR}/orchestrator-api"
    wait_healthy api check_ready "${API_PORT}"

    local http_port=0
    if worker_has_http_port; then
        http_port=1
    fi
    for ((i = 1; i <= WORKERS; i++)); do
        ensure_started "worker-${i}" "$(worker_port "${i}")" WORKER_HTTP_BASE_PORT "${SERVICE_ENV[@]}" \
            "WORKER_ID=local-worker-${i}" "WORKER_HTTP_HOST=${HOST}" "WORKER_HTTP_PORT=$(worker_port "${i}")" -- \
            "${BIN_DIR}/orchestrator-worker"
    done
    for ((i = 1; i <= WORKERS; i++)); do
        if ((http_port)); then
            wait_healthy "worker-${i}" check_ready "$(worker_port "${i}")"
        else
            wait_healthy "worker-${i}" check_log "worker-${i}" "Worker started"
        fi
    done

    print_summary
}

print_summary() {
    local i file extra=""
    cat <<EOF

The stack is up (Kafka mode, ${WORKERS} workers):
  API             http://${HOST}:${API_PORT}
  dashboard       http://${HOST}:${API_PORT}/ui
  Swagger UI      http://${HOST}:${API_PORT}/docs
  mock services   revenue http://${HOST}:$(mock_port 0), rebates http://${HOST}:$(mock_port 1), specialty http://${HOST}:$(mock_port 2)
  broker          ${HOST}:${KAFKA_PORT} (Tansu, memory storage)
  PostgreSQL      $(redacted_database_url)
EOF
    for ((i = 1; i <= WORKERS; i++)); do
        if worker_has_http_port; then
            echo "  worker-${i}        local-worker-${i}, health http://${HOST}:$(worker_port "${i}")/health"
        else
            echo "  worker-${i}        local-worker-${i}"
        fi
    done
    # Workers of an earlier run with a larger WORKERS keep running until `stop`.
    for file in "${PID_DIR}"/worker-*.pid; do
        [[ -e ${file} ]] || continue
        i="$(basename "${file}" .pid)"
        i="${i#worker-}"
        if ((i > WORKERS)); then
            extra+=" worker-${i}"
        fi
    done
    if [[ -n ${extra} ]]; then
        echo "  also running from an earlier run:${extra}"
    fi
    cat <<EOF
Logs: ${LOG_DIR}/
Stop: $(stop_command)
EOF
}

# `make stop` with this run's settings that are not the defaults, to be pasted as it
# is. Only RUN_DIR tells `stop` which stack to stop; the ports say which one that is.
stop_command() {
    local command="make stop" setting name default
    if [[ ${RUN_DIR} != "${repo_root}/.run" ]]; then
        command+=" RUN_DIR=$(printf '%q' "${RUN_DIR}")"
    fi
    for setting in API_PORT:8000 MOCK_BASE_PORT:8001 KAFKA_PORT:9092 WORKER_HTTP_BASE_PORT:9000; do
        name="${setting%:*}"
        default="${setting#*:}"
        if [[ ${!name} != "${default}" ]]; then
            command+=" ${name}=${!name}"
        fi
    done
    echo "${command}"
}

# ---------------------------------------------------------------------------------
# stop

# stop_group NAME... : SIGTERM to each, wait up to STOP_TIMEOUT for all, then SIGKILL.
stop_group() {
    local name pid
    local -a names=() pids=()
    for name in "$@"; do
        if pid="$(running_pid "${name}")"; then
            log "${name}: stopping (pid ${pid})"
            kill -TERM "${pid}" 2>/dev/null || true
            names+=("${name}")
            pids+=("${pid}")
        else
            rm -f -- "$(pid_file "${name}")"
        fi
    done
    ((${#names[@]})) || return 0

    local deadline=$((SECONDS + STOP_TIMEOUT)) left i
    while true; do
        left=0
        for i in "${!names[@]}"; do
            if running_pid "${names[i]}" >/dev/null 2>&1; then
                left=1
            fi
        done
        ((left)) || break
        if ((SECONDS >= deadline)); then
            for i in "${!names[@]}"; do
                if running_pid "${names[i]}" >/dev/null 2>&1; then
                    log "${names[i]}: still running after ${STOP_TIMEOUT} s, sending SIGKILL"
                    kill -KILL "${pids[i]}" 2>/dev/null || true
                fi
            done
            deadline=$((SECONDS + 10))
            # One more round for the kills; a process that survives SIGKILL is reported.
            while ((SECONDS < deadline)); do
                left=0
                for i in "${!names[@]}"; do
                    if running_pid "${names[i]}" >/dev/null 2>&1; then
                        left=1
                    fi
                done
                ((left)) || break
                sleep 0.2
            done
            break
        fi
        sleep 0.2
    done
    for i in "${!names[@]}"; do
        if running_pid "${names[i]}" >/dev/null 2>&1; then
            log "${names[i]}: pid ${pids[i]} did not stop"
        else
            rm -f -- "$(pid_file "${names[i]}")"
        fi
    done
}

components_matching() {
    local pattern=$1 file
    for file in "${PID_DIR}"/${pattern}.pid; do
        [[ -e ${file} ]] && basename "${file}" .pid
    done
    return 0
}

cmd_stop() {
    if [[ ! -d ${RUN_DIR} ]]; then
        log "nothing to stop: ${RUN_DIR} does not exist"
        return 0
    fi
    set_paths
    take_lock
    local -a first=() second=()
    # Workers and the API first, while the services, the broker and the database they
    # finish their work against are still up.
    mapfile -t first < <(components_matching 'worker-*'; components_matching api)
    mapfile -t second < <(components_matching 'mock-*'; components_matching broker)
    stop_group "${first[@]}"
    stop_group "${second[@]}"
    # Anything else a future version of `run` started.
    local -a rest=()
    mapfile -t rest < <(components_matching '*')
    stop_group "${rest[@]}"
    stop_postgres_if_ours
    if any_running; then
        die "some components did not stop; see above"
    fi
    rm -f -- "${STATE_FILE}"
    log "stopped; logs are kept in ${LOG_DIR}/"
}

# ---------------------------------------------------------------------------------
# db

# For running the binaries by hand: PostgreSQL as `run` would have it, the database
# created, then migrated. A local cluster started here is not recorded for `stop`,
# which is about `run`'s components only.
cmd_db() {
    build
    [[ -x ${BIN_DIR}/orchestrator-api ]] \
        || die "${BIN_DIR}/orchestrator-api is missing: build it (cargo build --workspace --bins)"
    ensure_postgres
    log "postgres: applying the migrations to $(redacted_database_url)"
    DATABASE_URL="${DATABASE_URL}" "${BIN_DIR}/orchestrator-api" migrate
}

# ---------------------------------------------------------------------------------
# status

cmd_status() {
    if [[ ! -d ${RUN_DIR}/pids ]]; then
        echo "nothing started from ${RUN_DIR}"
        return 0
    fi
    set_paths
    local file name pid started any=0
    for file in "${PID_DIR}"/*.pid; do
        [[ -e ${file} ]] || continue
        any=1
        name="$(basename "${file}" .pid)"
        read -r pid started _ <"${file}" || true
        if is_ours "${pid:-}" "${started:-}"; then
            printf '  %-16s running (pid %s), log %s\n' "${name}" "${pid}" "${LOG_DIR}/${name}.log"
        else
            printf '  %-16s gone (stale pid file)\n' "${name}"
        fi
    done
    ((any)) || echo "nothing started from ${RUN_DIR}"
    if [[ -f ${STATE_FILE} ]]; then
        echo "settings:"
        sed 's/^/  /' "${STATE_FILE}"
    fi
    if [[ -f ${PG_MARKER} ]]; then
        echo "PostgreSQL cluster $(cat "${PG_MARKER}") was started by 'run' and is stopped by 'stop'"
    fi
}

case "${1:-}" in
    run) cmd_run ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    db) cmd_db ;;
    *)
        echo "usage: $0 run|stop|status|db" >&2
        exit 2
        ;;
esac
