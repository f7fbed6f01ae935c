"""Whole studies, end to end, this checkout against another, interleaved: wall time, fitting time, memory.

Each round runs ``actreg run STUDY`` once per study and per checkout, each in a fresh process
on a fresh SQLite storage in a temporary folder (start-up, imports, worker start, compilation
and storage all counted), alternating the checkouts, and keeps each one's best round: the
host's noise only ever adds time. Prints a Markdown table: wall seconds, the fitting seconds
the run's last line reports (summed over the fitting processes; older checkouts do not say),
the peak memory of the process tree (sum of proportional set sizes, see ``measure_run.py``)
and the ratio of the other checkout's best wall time to this one's.

    git worktree add /tmp/before <commit>           # the code to compare with
    .venv/bin/python benchmarks/study_speed.py studies/seed-circles.toml studies/seed-tutorial.toml \\
        --code /tmp/before --rounds 2
    .venv/bin/python benchmarks/study_speed.py studies/seed-circles-resampled.toml --seeds 100 --code /tmp/before

``--seeds N`` and ``--epochs N`` are passed to ``actreg run`` (a study of other seeds is another
study, stored apart); ``--n-jobs`` too. Without ``--code`` only this checkout runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_run import tree_memory

ROOT = Path(__file__).resolve().parents[1]
LAST_LINE = re.compile(r"(?P<fits>\d+) fits in (?P<wall>[\d.]+) s(?: \(fitting (?P<fitting>[\d.]+) s)?")


def run_once(code: Path, study: Path, extra: list[str]) -> dict[str, float]:
    """One ``actreg run`` of ``study`` with the package of checkout ``code``: wall, fitting, peak PSS."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "search", "run", str(study.resolve()), "--no-progress",
                   "--storage", f"sqlite:///{tmp}/bench.db", *extra]
        # From the temporary folder: `python -m` puts the working directory first on the path, ahead of
        # PYTHONPATH, so a run from a checkout would import that checkout's code whatever --code says.
        env = {**os.environ, "PYTHONPATH": str(code)}
        began = time.perf_counter()
        proc = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak, tick = 0, 0
        while proc.poll() is None:
            if tick % 5 == 0:
                peak = max(peak, tree_memory(proc.pid)[1])
            tick += 1
            time.sleep(0.2)
        wall = time.perf_counter() - began
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"error: {code}: actreg run {study.name} failed ({proc.returncode}):\n{err[-2000:]}")
    last = LAST_LINE.search(out.strip().splitlines()[-1])
    fitting = float(last["fitting"]) if last and last["fitting"] else float("nan")
    return {"wall": wall, "fitting": fitting, "fits": int(last["fits"]) if last else 0, "pss_mib": peak / 2**20}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", type=Path, metavar="STUDY.toml")
    parser.add_argument("--code", type=Path, help="another checkout to compare with (its package runs on this Python)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--n-jobs", type=int)
    args = parser.parse_args(argv)
    extra = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
             if k in ("seeds", "epochs", "n_jobs") and v is not None]
    ways = {"this": ROOT} | ({"other": args.code.resolve()} if args.code else {})
    best: dict[tuple[str, str], dict[str, float]] = {}
    for k in range(args.rounds):
        for study in args.studies:
            for way, code in ways.items():
                got = run_once(code, study, extra)
                print(f"round {k + 1}/{args.rounds} {study.name} {way}: wall {got['wall']:.1f} s, "
                      f"fitting {got['fitting']:.1f} s, {got['pss_mib']:.0f} MiB", file=sys.stderr, flush=True)
                key = (study.name, way)
                if key not in best or got["wall"] < best[key]["wall"]:
                    best[key] = got
    print(f"best of {args.rounds} interleaved rounds; {os.cpu_count()} cores; "
          + (" ".join(extra) or "as the files say"))
    print("| study | code | fits | wall s | fitting s | peak PSS MiB | other / this |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for study in args.studies:
        for way in ways:
            b = best[study.name, way]
            ratio = best[study.name, "other"]["wall"] / best[study.name, "this"]["wall"] if "other" in ways else None
            fitting = "–" if b["fitting"] != b["fitting"] else f"{b['fitting']:.1f}"  # NaN: the checkout does not say
            print(f"| {study.name} | {way} | {b['fits']} | {b['wall']:.1f} | {fitting} | {b['pss_mib']:.0f} | "
                  + (f"{ratio:.2f} |" if ratio and way == "this" else " |"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
