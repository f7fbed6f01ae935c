#!/usr/bin/env bash
# Wall time of a study on a loopback Dask cluster of 1 and 2 workers, for two chunk sizes,
# against the local loky run with n_jobs = 2; interleaved, ROUNDS rounds. Run from the
# repository root with the dask extra installed:
#     bash benchmarks/cluster_scaling.sh [STUDY.toml] [EPOCHS] [ROUNDS]
set -euo pipefail
STUDY=${1:-studies/seed-circles.toml}
EPOCHS=${2:-500}
ROUNDS=${3:-2}
BIN=$(dirname "$(command -v actreg || echo .venv/bin/actreg)")
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
for c in 32 8; do
    # the study with its chunk_size set, beside the original (a builder module stays importable)
    sed "s/^name = .*/&\nchunk_size = $c/" "$STUDY" > "$(dirname "$STUDY")/.chunk$c.toml"
done
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK" "$(dirname "$STUDY")"/.chunk*.toml' EXIT
"$BIN/dask" scheduler --host 127.0.0.1 --port "$PORT" --no-dashboard > "$WORK/scheduler.log" 2>&1 &
sleep 4
run() {  # label, then actreg run's arguments
    local label=$1; shift
    rm -f "$WORK/run.db"
    "$BIN/actreg" run "$@" --seeds 30 --epochs "$EPOCHS" --storage "sqlite:///$WORK/run.db" --no-progress \
        | tail -n 1 | grep -o 'fits in [0-9.]* s' | sed "s/^/$label: /"
}
for round in $(seq 1 "$ROUNDS"); do
    for n in 1 2; do
        workers=()
        for i in $(seq 1 "$n"); do
            "$BIN/dask" worker "tcp://127.0.0.1:$PORT" --nthreads 1 --host 127.0.0.1 --no-dashboard --no-nanny \
                > "$WORK/worker$i.log" 2>&1 &
            workers+=($!)
        done
        sleep 8
        for c in 32 8; do
            run "round $round, $n Dask worker(s), chunk_size $c" "$(dirname "$STUDY")/.chunk$c.toml" \
                --scheduler "tcp://127.0.0.1:$PORT"
        done
        kill "${workers[@]}"; wait "${workers[@]}" 2>/dev/null || true
    done
    for c in 32 8; do
        run "round $round, local n_jobs 2, chunk_size $c" "$(dirname "$STUDY")/.chunk$c.toml" --n-jobs 2
    done
done
