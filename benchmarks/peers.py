"""actreg, the Keras-on-JAX anchor and ``model.fit`` on the case-study MLP, side by side.

The host is shared and noisy (the same benchmark varies severalfold between hours), so the
ways are measured in the same run, interleaved (round 1: actreg, the anchors; round 2:
...), each in a fresh process, and each way's best round counts; only the ratios mean much.
``model.fit`` is timed inside actreg's own bench (``actreg bench --json``). The anchor runs
twice per round: recording per epoch the training loss and the test accuracy only, and
recording what actreg records (training loss and accuracy, test loss and accuracy).
``--record-every K`` has actreg and the anchors evaluate the test set every K-th epoch
(as a study records its curves: every epochs/100), not every epoch.

    python benchmarks/peers.py --rounds 3 --epochs 1000 --seeds 30 [--record-every 10]

The anchor needs the ``bench`` extra (``pip install -e ".[bench]"``: jax, optax); without
it, its row says "skipped" and the others are still measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ANCHOR = Path(__file__).with_name("keras_jax_anchor.py")


def actreg_round(epochs: int, seeds: int, fit_epochs: int, record_every: int) -> dict[str, float]:
    out = _run([sys.executable, "-m", "search", "bench", "--json", "--epochs", str(epochs), "--seeds", str(seeds),
                "--fit-epochs", str(fit_epochs), "--record-every", str(record_every)])
    return {"actreg": out["actreg_us_per_model_epoch"], "keras model.fit": out["keras_fit_us_per_model_epoch"]}


# The anchor's two variants (keras_jax_anchor.py --outputs): what each epoch records.
ANCHORS = {"accuracy": "keras-on-jax vmap (anchor: train loss, test accuracy)",
           "all": "keras-on-jax vmap (anchor: actreg's outputs)"}


def anchor_round(epochs: int, seeds: int, outputs: str, record_every: int) -> dict[str, float] | None:
    proc = subprocess.run([sys.executable, str(ANCHOR), "--epochs", str(epochs), "--seeds", str(seeds),
                           "--outputs", outputs, "--record-every", str(record_every)], capture_output=True, text=True)
    if proc.returncode == 3:  # jax or optax missing: the anchor said why
        print(proc.stderr.strip().splitlines()[-1], file=sys.stderr)
        return None
    if proc.returncode != 0:
        raise SystemExit(f"error: {ANCHOR.name} failed:\n{proc.stderr[-2000:]}")
    return {ANCHORS[outputs]: json.loads(proc.stdout.strip().splitlines()[-1])["us_per_model_epoch"]}


def _run(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[1:4])} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rounds: list[dict[str, float]]) -> str:
    """One row per way: best and every round, and its best as a multiple of actreg's best."""
    ways = list(dict.fromkeys(w for r in rounds for w in r))
    best = {w: min(r[w] for r in rounds if w in r) for w in ways}
    lines = ["| way | best µs per model-epoch | rounds | × actreg |", "|---|---:|---|---:|"]
    for w in sorted(ways, key=best.get):
        each = ", ".join(f"{r[w]:g}" for r in rounds if w in r)
        lines.append(f"| {w} | {best[w]:g} | {each} | {best[w] / best['actreg']:.3g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--fit-epochs", type=int, default=5, help="epochs of model.fit per round (default 5)")
    parser.add_argument("--record-every", type=int, default=1, metavar="K",
                        help="actreg and the anchors evaluate the test set every K-th epoch and at the last "
                             "(default 1, every epoch, as model.fit with validation_data; a study: epochs/100)")
    args = parser.parse_args(argv)
    rounds, anchor = [], True
    for k in range(args.rounds):
        measured = actreg_round(args.epochs, args.seeds, args.fit_epochs, args.record_every)
        for outputs in ANCHORS if anchor else ():
            got = anchor_round(args.epochs, args.seeds, outputs, args.record_every)
            anchor = got is not None
            measured.update(got or {})
        rounds.append(measured)
        print(f"round {k + 1}/{args.rounds}: " + ", ".join(f"{w} {v:g}" for w, v in measured.items()), file=sys.stderr)
    print(f"case-study MLP, {args.seeds} seeds x {args.epochs} epochs, test set every {args.record_every} epoch(s) "
          f"(model.fit: every epoch), best of {args.rounds} interleaved rounds")
    print(table(rounds))
    if not anchor:
        print("keras-on-jax vmap (anchors): skipped (needs the bench extra: jax, optax)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
