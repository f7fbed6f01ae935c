"""The shared queue's cost per claim: a grid of many configurations, one seed, one epoch.

Writes a study of ``--configurations`` configurations (the baseline and L1, L2, L1_L2 at
many strengths, pre and post) into a temporary folder and runs it with ``actreg run``
(one worker), on SQLite by default or on ``--storage``; prints the wall time, the time
per configuration (queueing and start-up included) and the seconds of training. With
``--limit S`` the runners are stopped after S seconds, for code too slow to finish. Run from the repository root:

    .venv/bin/python benchmarks/queue_scaling.py --configurations 1999
    .venv/bin/python benchmarks/queue_scaling.py --configurations 1999 --storage postgresql://postgres@127.0.0.1/test \\
        --runners 8

With ``--runners N``, N runners share the study (start-up included); the trials' states are
printed (a PRUNED trial is a configuration queued twice). ``--python`` runs another checkout's code (its
``.venv/bin/python`` with ``PYTHONPATH`` set to it) for an interleaved comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

STUDY = """
name = "{name}"
seeds = 1
[data]
source = "circles"
n_samples = 100
noise = 0.1
random_state = 1
n_train = 30
[model]
layers = [
  {{ type = "dense", units = 8, activation = "relu", regularize = true }},
  {{ type = "dense", units = 1, activation = "sigmoid" }},
]
[train]
epochs = 1
batch_size = 32
[space]
norm = ["none", "l1", "l2", "l1_l2"]
strength = {strengths}
placement = ["pre", "post"]
"""


def write_study(folder: Path, name: str, configurations: int) -> Path:
    per_norm = max(1, (configurations - 1) // 6)  # 3 norms x 2 placements, and the baseline
    strengths = [float(f"{1e-6 * 1.01 ** k:.6g}") for k in range(per_norm)]
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(STUDY.format(name=name, strengths=json.dumps(strengths))))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configurations", type=int, default=1999)
    parser.add_argument("--storage", help="storage URL (default: SQLite in the temporary folder)")
    parser.add_argument("--runners", type=int, default=1)
    parser.add_argument("--python", default=sys.executable, help="the Python that runs actreg")
    parser.add_argument("--code", help="PYTHONPATH for that Python (another checkout)")
    parser.add_argument("--limit", type=float, help="stop the runners after this many seconds (Ctrl-C) and "
                        "report the configurations stored by then")
    args = parser.parse_args()
    env = {**os.environ, **({"PYTHONPATH": args.code} if args.code else {})}
    with tempfile.TemporaryDirectory() as tmp:
        name = f"queue{os.getpid()}"
        path = write_study(Path(tmp), name, args.configurations)
        storage = args.storage or f"sqlite:///{tmp}/{name}.db"
        command = [args.python, "-m", "search", "run", str(path), "--no-progress", "--n-jobs", "1",
                   "--storage", storage]
        began = time.perf_counter()
        # From the temporary folder: `python -m` puts the working directory first on the path,
        # ahead of PYTHONPATH, so a run from a checkout would import that checkout's code.
        procs = [subprocess.Popen(command, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(args.runners)]
        try:
            outs = [p.communicate(timeout=max(1.0, began + args.limit - time.perf_counter()) if args.limit else None)
                    for p in procs]
        except subprocess.TimeoutExpired:  # stopped as Ctrl-C stops them: the claims are released
            for p in procs:
                p.send_signal(signal.SIGINT)
            outs = [p.communicate() for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        wall = time.perf_counter() - began
        stopped = bool(args.limit) and any(p.returncode == 130 for p in procs)
        for p, (out, err) in zip(procs, outs):
            if p.returncode != 0 and not (stopped and p.returncode == 130):
                sys.exit(f"a runner failed ({p.returncode}):\n{err[-3000:]}")
        import optuna

        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        states = {}
        for t in trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        fit = sum(sum(t.user_attrs.get("fit_time", [0.0])) for t in trials if t.state.name == "COMPLETE")
        if args.storage:  # a shared database: leave nothing behind
            optuna.delete_study(study_name=name, storage=storage)
        n = states.get("COMPLETE", 0)
        print(json.dumps({"configurations": n, "runners": args.runners, "wall_s": round(wall, 1),
                          "s_per_configuration": round(wall / max(n, 1), 4), "fit_s": round(fit, 1),
                          "trials_by_state": states, "storage": storage.split("://")[0],
                          "stopped_at_limit": stopped}))


if __name__ == "__main__":
    main()
