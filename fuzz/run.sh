#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, on the stable toolchain, from the
# committed corpus, two at a time (FUZZ_JOBS); fails when a target finds a crash, leak or hang, whose input
# libFuzzer writes to fuzz/artifacts/<target>/. README, "Fuzzing".
#
#   fuzz/run.sh 20                      # what CI runs
#   fuzz/run.sh 600 glob when           # a long run of two targets
#
# New inputs a run finds go to a scratch directory, not into fuzz/corpus: the committed corpus
# changes only by `cargo fuzz cmin` (see README).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
jobs=${FUZZ_JOBS:-2}
# cargo-fuzz passes nightly-only flags (-Z...); the one stable toolchain takes them with
# RUSTC_BOOTSTRAP=1. No sanitizer: the code under test is safe Rust (`--sanitizer address` also
# works on this toolchain, at about half the speed).
export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

# The lock file is committed: build from nothing else (cargo fuzz has no --locked).
cargo fetch --locked --quiet
cargo fuzz build "${flags[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# One target: its own dictionary, its output in $scratch/<target>.log, its status as exit code.
fuzz_one() {
    local target=$1 dict=()
    case $target in
        ingress_publish | signature) dict=(-dict=dictionaries/http.dict) ;;
        ingress_batch | ws_client_frame | when) dict=(-dict=dictionaries/json.dict) ;;
        config_toml) dict=(-dict=dictionaries/toml.dict) ;;
    esac
    mkdir -p "$scratch/$target" "corpus/$target"
    # -timeout: one input taking longer than 10 s is a hang and fails the run, as a crash does.
    cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${dict[@]}" >"$scratch/$target.log" 2>&1
}

report() {
    local target=$1 status=$2
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$scratch/$target.log" >&2
        echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/" \
            "(reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $target <file>)" >&2
        return 1
    fi
    printf 'fuzz: %-16s ok  %s\n' "$target" "$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' \
        "$scratch/$target.log" | sed 's/^stat:://; s/: */=/' | tr '\n' ' ')"
}

echo "fuzz: ${#targets[@]} targets, ${seconds}s each, $jobs at a time"
failed=0
declare -A running=()
for target in "${targets[@]}"; do
    fuzz_one "$target" &
    running[$!]=$target
    while [ ${#running[@]} -ge "$jobs" ]; do
        status=0
        wait -n -p done_pid "${!running[@]}" || status=$?
        report "${running[$done_pid]}" "$status" || failed=1
        unset "running[$done_pid]"
    done
done
for pid in "${!running[@]}"; do
    status=0
    wait "$pid" || status=$?
    report "${running[$pid]}" "$status" || failed=1
done
exit "$failed"
