#!/usr/bin/env bash
# Counts the instructions one process executes per task (valgrind's callgrind): the
# worker, or the API with PROCESS=api. From two end-to-end runs of `orchestrator-bench`
# with 1 worker and 0 ms mocks: TASKS tasks,
# then twice as many. The difference divided by TASKS is the per-task cost, without the
# start and stop that both runs share (loading the CA certificates alone is ~0.5
# billion instructions). Instruction counts repeat to within ~0.2% from run to run,
# where CPU time on this machine varies by ±20%: a change of a few percent shows here.
#
#   [PROCESS=api] scripts/instructions.sh BIN_DIR [TASKS [BENCH ARGS...]]   (TASKS 2000, ~1 min)
#
# e.g. `... target/release 2000 --export-spans` for what exporting spans costs.
# BIN_DIR holds release binaries (target/release; BENCH names an orchestrator-bench
# elsewhere); profiles and logs go to target/instructions/PROCESS/ (`callgrind_annotate`
# reads the .out files).
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=$(realpath "${1:?usage: $0 BIN_DIR [TASKS]}")
tasks=${2:-2000}
shift $(( $# < 2 ? $# : 2 ))
bench=${BENCH:-$bin_dir/orchestrator-bench}
process=${PROCESS:-worker}
case $process in worker | api) ;; *) echo "PROCESS is worker or api, not $process" >&2; exit 1 ;; esac
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$bench" ] || { echo "$bench is missing: cargo build --release -p orchestrator-bench" >&2; exit 1; }

out=$(realpath -m "target/instructions/$process")
rm -rf "$out"; mkdir -p "$out/bin"
# The bench starts every binary from one folder: the real ones, and the counted one
# under callgrind (exec, so the bench's signals reach valgrind, which dumps on exit).
for f in "$bin_dir"/*; do ln -s "$f" "$out/bin/$(basename "$f")"; done
rm "$out/bin/orchestrator-$process"
cat > "$out/bin/orchestrator-$process" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --log-file=$out/$process-%p.log --callgrind-out-file=$out/$process-%p.out "$bin_dir/orchestrator-$process" "\$@"
WRAP
chmod +x "$out/bin/orchestrator-$process"

# The instructions of the run's busiest such process (the bench may start others that
# do no work, e.g. to check the binary or migrate).
count() {
    local run=$1 n=$2
    shift 2
    mkdir -p "$out/$run"
    "$bench" --bin-dir "$out/bin" --output-dir "$out/$run" --phases e2e --worker-counts 1 \
        --mock-latencies-ms 0 --e2e-tasks "$n" --e2e-callbacks=false "$@" \
        >"$out/$run/stdout" 2>"$out/$run/stderr"
    local logs
    logs=$(ls "$out/$process"-*.log)
    grep -h "Collected" $logs | awk '{print $4}' | sort -n | tail -1
    mkdir -p "$out/$run/profiles" && mv "$out/$process"-* "$out/$run/profiles/"
}
small=$(count small "$tasks" "$@")
large=$(count large $((tasks * 2)) "$@")
echo "$process instructions: $small for $tasks tasks, $large for $((tasks * 2))"
echo "per task: $(( (large - small) / tasks ))"
