"""Calibrate the verdicts: how often a study gets any wrong verdict, on the shapes of differences that
actreg's studies produce, and what validity costs in decided verdicts.

Every output of actreg ends with "at most a 5% chance of any wrong verdict". This measures it by
Monte Carlo for ``search.results.stats`` itself (the verdicts of a study of fixed replicates,
``region_verdicts`` at alpha / m, and the default race, ``race_decisions`` with its looks and
futility), beside two procedures for comparison: the paired t procedure actreg used before
(``t``: t p-values, a verdict from 5 pairs, pairs without spread decided by their amount) and
TOST + Holm (``tost-holm``: one-sided t-tests of Δ ≤ rope, Δ ≥ −rope and TOST, Holm over all).

A cell is a shape of the paired differences, a number of replicates n, a number of configurations
m and a true mean difference Δ; each of ``--studies`` simulated studies has m configurations
of that same Δ, the worst place for the promise. Shapes (sd 0.03 where the shape has a free scale;
rope 0.01 as the case study's accuracy):

* ``normal``; ``t3`` (Student's t with 3 df, scaled to sd 0.03);
* ``skew+2``, ``skew-2``: a shifted exponential (skewness ±2), a configuration that sometimes
  collapses;
* ``binomial``: two accuracies on 70 test rows, each Binomial(70, p) / 70, p = 0.77 (+ Δ);
* ``step1``, ``step3``: 0 or ±1/70 (or ±3/70), the chance of the step set to make the mean Δ: a
  penalty that changes one (or three) test rows of 70 in some replicates.

Δ: the rope's edges (±rope: equivalent is the truth), just outside them (±1.03 rope: better or
worse), and 0. A wrong verdict is a decided verdict whose region does not hold Δ. The harness
prints, per cell, the chance of any wrong verdict with its Monte Carlo standard error, and the
share of verdicts withheld; a cell above alpha + 3 s.e. is marked ``FAIL``. Then the price of
validity: the share of right decided verdicts of each procedure at Δ = 2 rope and Δ = 0, for
normal and binomial differences (sd 0.02 for normal ones), and the promises of ``power``
(``detectable_diff``, ``replicates_needed``) against the power realised at them.

    .venv/bin/python benchmarks/calibration.py                 # the full grid (about an hour on 2 cores)
    .venv/bin/python benchmarks/calibration.py --quick         # a few cells (about a minute)
    .venv/bin/python benchmarks/calibration.py --markdown out.md

Deterministic: the same arguments give the same table.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

ROPE = 0.01
SD = 0.03
ALPHA = 0.05
SHAPES = ("normal", "t3", "skew+2", "skew-2", "binomial", "step1", "step3")
ROWS = 70  # test rows of the case study


def draw(shape: str, delta: float, size: tuple[int, ...], rng: np.random.Generator, sd: float = SD) -> np.ndarray:
    """Paired differences of ``shape`` with mean ``delta``."""
    if shape == "normal":
        return delta + sd * rng.standard_normal(size)
    if shape == "t3":
        return delta + sd / math.sqrt(3.0) * rng.standard_t(3, size)
    if shape in ("skew+2", "skew-2"):
        sign = 1.0 if shape == "skew+2" else -1.0
        return delta + sign * sd * (rng.exponential(1.0, size) - 1.0)
    if shape == "binomial":
        p = 0.77
        return (rng.binomial(ROWS, p + delta, size) - rng.binomial(ROWS, p, size)) / ROWS
    if shape in ("step1", "step3"):
        step = int(shape[4:]) / ROWS
        return math.copysign(step, delta) * (rng.random(size) < abs(delta) / step)
    raise ValueError(f"unknown shape {shape!r}")


def truth(delta: float, rope: float = ROPE) -> str:
    return "better" if delta > rope else "worse" if delta < -rope else "equivalent"


# ----------------------------------------------------------------------------- the procedures


def actreg(x: np.ndarray, rope: float, alpha: float) -> np.ndarray:
    """Verdicts (studies x m) of ``search.results.stats`` for differences ``x`` (studies x m x n)."""
    from search.results.stats import region_verdicts

    studies, m, n = x.shape
    verdict, _, _ = region_verdicts(list(x.reshape(-1, n)), rope, alpha / m, withheld_pvalues=False)
    return np.array(verdict, dtype=object).reshape(studies, m)


def _t_regions(x: np.ndarray, rope: float) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    from scipy import stats

    n = x.shape[-1]
    mean, sd = x.mean(-1), x.std(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = sd / math.sqrt(n)
        above_minus = stats.t.sf((mean + rope) / se, n - 1)
        below_plus = stats.t.cdf((mean - rope) / se, n - 1)
        outside = np.minimum(1.0, stats.t.sf((np.abs(mean) - rope) / se, n - 1)
                             + stats.t.cdf((-np.abs(mean) - rope) / se, n - 1))
    p = {"better": np.maximum(outside, above_minus), "worse": np.maximum(outside, below_plus),
         "equivalent": np.maximum(above_minus, below_plus)}
    return p, mean, sd


def t_before(x: np.ndarray, rope: float, alpha: float) -> np.ndarray:
    """The paired t procedure of actreg before the bootstrap: t p-values times m, from 5 pairs, pairs
    without spread decided by their amount."""
    m, n = x.shape[1], x.shape[-1]
    p, mean, sd = _t_regions(x, rope)
    still = sd == 0
    p["better"] = np.where(still, np.where(mean > rope, 0.0, 1.0), p["better"])
    p["worse"] = np.where(still, np.where(mean < -rope, 0.0, 1.0), p["worse"])
    p["equivalent"] = np.where(still, np.where(np.abs(mean) < rope, 0.0, 1.0), p["equivalent"])
    return _first_region(p, alpha / m, enough=n >= 5)


def tost_holm(x: np.ndarray, rope: float, alpha: float) -> np.ndarray:
    """One-sided t-tests of Δ ≤ rope (better) and Δ ≥ −rope (worse) and TOST (equivalent), Holm over the
    3m p-values of a study."""
    from scipy import stats

    studies, m, n = x.shape
    mean, sd = x.mean(-1), x.std(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = sd / math.sqrt(n)
        better = stats.t.sf((mean - rope) / se, n - 1)
        worse = stats.t.cdf((mean + rope) / se, n - 1)
        equivalent = np.maximum(stats.t.sf((mean + rope) / se, n - 1), stats.t.cdf((mean - rope) / se, n - 1))
    p = np.nan_to_num(np.stack([equivalent, better, worse], axis=-1).reshape(studies, -1), nan=1.0)
    order = np.argsort(p, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1) * (p.shape[1] - np.arange(p.shape[1]))
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(ranked, axis=1))
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, adjusted_sorted, axis=1)
    adjusted = adjusted.reshape(studies, m, 3)
    names = np.array(["equivalent", "better", "worse"], dtype=object)
    hit = adjusted <= alpha
    return np.where(hit.any(-1), names[hit.argmax(-1)], "undecided")


def _first_region(p: dict[str, np.ndarray], level: float, enough: bool) -> np.ndarray:
    out = np.full(p["better"].shape, "undecided", dtype=object)
    if enough:
        for k in ("equivalent", "worse", "better"):  # the first in VERDICTS order wins: written last
            out = np.where(np.nan_to_num(p[k], nan=1.0) <= level, k, out)
    return out


PROCEDURES: dict[str, Callable[[np.ndarray, float, float], np.ndarray]] = {
    "actreg": actreg, "t": t_before, "tost-holm": tost_holm}


def race(x: np.ndarray, rope: float, alpha: float, looks: Sequence[int] = (5, 10, 20, 40, 80, 100),
         futility: float | None = 1.25) -> np.ndarray:
    """The default race's final verdicts (studies x m) for differences ``x`` (studies x m x max look),
    with ``search.results.race.race_decisions`` at every look."""
    from search.results.race import race_decisions

    studies, m, _ = x.shape
    verdict = np.full((studies, m), "undecided", dtype=object)
    racing = np.ones((studies, m), dtype=bool)
    for k, n in enumerate(looks):
        where = np.argwhere(racing)
        if not len(where):
            break
        rows = race_decisions([x[s, j, :n] for s, j in where], rope, k, looks, m, alpha, futility)
        for (s, j), row in zip(where, rows):
            if row["stopped"]:
                racing[s, j] = False
                verdict[s, j] = row["verdict"]
    return verdict


# ----------------------------------------------------------------------------- cells


def wrong_rate(verdict: np.ndarray, delta: float) -> tuple[float, float, float]:
    """The share of studies with any wrong verdict, its Monte Carlo s.e., and the share undecided."""
    right = truth(delta)
    wrong = ((verdict != "undecided") & (verdict != right)).any(axis=1)
    rate = float(wrong.mean())
    error = math.sqrt(max(rate * (1 - rate), ALPHA * (1 - ALPHA)) / len(wrong))
    return rate, error, float((verdict == "undecided").mean())


def deltas(rope: float = ROPE) -> tuple[float, ...]:
    return (rope, -rope, 1.03 * rope, -1.03 * rope, 0.0)


def calibrate(shapes: Sequence[str], ns: Sequence[int], ms: Sequence[int], studies: int,
              procedures: Sequence[str], race_ms: Sequence[int], race_studies: int, out=print) -> list[dict]:
    """Every fixed-n cell, then every race cell; one printed line and one record per cell."""
    records = []
    seeds = itertools.count(1)
    for shape, n, delta in itertools.product(shapes, ns, deltas()):
        rng = np.random.default_rng(next(seeds))
        x = draw(shape, delta, (studies, max(ms), n), rng)
        for m, name in itertools.product(ms, procedures):
            start = time.perf_counter()
            rate, se, undecided = wrong_rate(PROCEDURES[name](x[:, :m], ROPE, ALPHA), delta)
            records.append(_record("fixed", name, shape, n, m, delta, rate, se, undecided, studies))
            out(_line(records[-1], time.perf_counter() - start))
    for shape, delta in itertools.product(shapes if race_ms else (), deltas()[:4]):
        rng = np.random.default_rng(next(seeds))
        x = draw(shape, delta, (race_studies, max(race_ms), 100), rng)
        for m in race_ms:
            start = time.perf_counter()
            rate, se, undecided = wrong_rate(race(x[:, :m], ROPE, ALPHA), delta)
            records.append(_record("race", "actreg", shape, 100, m, delta, rate, se, undecided, race_studies))
            out(_line(records[-1], time.perf_counter() - start))
    return records


def _record(kind, name, shape, n, m, delta, rate, se, undecided, studies) -> dict:
    return {"kind": kind, "procedure": name, "shape": shape, "n": n, "m": m, "delta": delta, "wrong": rate,
            "se": se, "undecided": undecided, "studies": studies, "fail": rate > ALPHA + 3 * se}


def _line(r: dict, seconds: float) -> str:
    n = "looks 5-100" if r["kind"] == "race" else f"n {r['n']:>3}"
    return (f"{r['kind']:<5} {r['procedure']:<9} {r['shape']:<8} {n:<11} m {r['m']:>2} Δ {r['delta']:+.4f}  "
            f"any wrong {r['wrong']:.3f} ± {r['se']:.3f}  undecided {r['undecided']:.2f}"
            f"{'  FAIL' if r['fail'] else ''}  ({seconds:.1f} s)")


# ----------------------------------------------------------------------------- the price of validity


def price(ns: Sequence[int], ms: Sequence[int], studies: int, out=print) -> list[dict]:
    """The share of right decided verdicts of each procedure at Δ = 2 rope and Δ = 0."""
    records = []
    for (shape, sd), n, delta in itertools.product((("normal", 0.02), ("binomial", None)), ns, (2 * ROPE, 0.0)):
        rng = np.random.default_rng([7, n, int(delta * 1e4), len(shape)])
        x = draw(shape, delta, (studies, max(ms), n), rng, sd=sd if sd else SD)
        for m in ms:
            rates = {name: float((PROCEDURES[name](x[:, :m], ROPE, ALPHA) == truth(delta)).mean())
                     for name in PROCEDURES}
            records.append({"shape": shape, "n": n, "m": m, "delta": delta, **rates})
            kept = rates["actreg"] / rates["t"] if rates["t"] > 0 else math.nan
            out(f"price {shape:<8} n {n:>3} m {m:>2} Δ {delta:+.3f}  right decided: actreg {rates['actreg']:.3f}  "
                f"t {rates['t']:.3f}  tost-holm {rates['tost-holm']:.3f}  actreg / t {kept:.2f}")
    return records


def promises(studies: int, out=print) -> list[dict]:
    """``power``'s promises against the power realised at them, for normal differences."""
    from search.results.stats import power

    records = []
    for mean, sd, n, m in ((0.03, 0.05, 30, 4), (0.0, 0.02, 30, 4), (0.02, 0.03, 30, 1), (0.004, 0.02, 50, 12),
                           (0.025, 0.04, 40, 36)):
        z = np.random.default_rng(0).standard_normal(n)
        g = mean + sd * (z - z.mean()) / z.std(ddof=1)
        promised = power(g, ROPE, ALPHA / m)
        rng = np.random.default_rng([11, n, m])
        for key, at_n, at_mean in (("replicates_needed", promised["replicates_needed"], mean),
                                   ("detectable_diff", n, promised["detectable_diff"])):
            if at_n is None or at_mean is None:
                continue
            x = draw("normal", at_mean, (studies, m, at_n), rng, sd=sd)
            realised = float((actreg(x, ROPE, ALPHA) == truth(at_mean)).mean())
            records.append({"promise": key, "mean": mean, "sd": sd, "n": n, "m": m,
                            "value": promised[key], "realised": realised})
            value = promised[key] if key == "replicates_needed" else f"{promised[key]:.4f}"
            out(f"promise {key:<17} mean {mean:+.3f} sd {sd:.3f} n {n:>3} m {m:>2}: {value} -> realised power "
                f"{realised:.3f} (promised 0.80)")
    return records


def markdown(cells: list[dict], costs: list[dict], kept: list[dict]) -> str:
    """The tables of docs/reports.md: per shape, n and m the worst cell over the five Δ (the promise is
    about the worst place), for each procedure; the races; the price of validity; the power promises."""
    fixed = [r for r in cells if r["kind"] == "fixed"]
    ms = sorted({r["m"] for r in fixed})
    names = [p for p in PROCEDURES if any(r["procedure"] == p for r in fixed)]
    worst: dict[tuple, dict] = {}
    for r in fixed:
        key = (r["shape"], r["n"], r["m"], r["procedure"])
        if key not in worst or r["wrong"] > worst[key]["wrong"]:
            worst[key] = r

    def cell(r: dict | None) -> str:
        return "–" if r is None else f"{r['wrong']:.3f}{' **FAIL**' if r['fail'] else ''}"

    lines = []
    if fixed:
        lines += [("Studies of fixed replicates: the chance of any wrong verdict at the worst of the five Δ, "
                   f"{' / '.join(names)} ({fixed[0]['studies']} studies a cell, Monte Carlo s.e. about "
                   f"{fixed[0]['se']:.3f}; a cell fails above {ALPHA} + 3 s.e.), and the share of actreg's "
                   "verdicts withheld or undecided there."), "",
                  "| shape | n | " + " | ".join(f"m = {m}" for m in ms) + " | undecided (actreg, m = 1) |",
                  "|---|---:|" + "---|" * len(ms) + "---:|"]
        for shape in SHAPES:
            for n in sorted({r["n"] for r in fixed if r["shape"] == shape}):
                parts = [" / ".join(cell(worst.get((shape, n, m, p))) for p in names) for m in ms]
                first = worst.get((shape, n, ms[0], "actreg"))
                undecided = "–" if first is None else f"{first['undecided']:.2f}"
                lines.append(f"| {shape} | {n} | " + " | ".join(parts) + f" | {undecided} |")
    races = [r for r in cells if r["kind"] == "race"]
    if races:
        lines += ["", ("The default race (looks at 5, 10, 20, 40, 80, 100; futility 1.25), actreg, at the worst "
                   f"of ±rope and ±1.03 rope ({races[0]['studies']} races a cell, s.e. about {races[0]['se']:.3f}):"),
                  "", "| shape | " + " | ".join(f"m = {m}" for m in sorted({r['m'] for r in races})) + " |",
                  "|---|" + "---:|" * len({r["m"] for r in races})]
        for shape in SHAPES:
            row = [max((r for r in races if r["shape"] == shape and r["m"] == m), key=lambda r: r["wrong"])
                   for m in sorted({r["m"] for r in races})]
            lines.append(f"| {shape} | " + " | ".join(cell(r) for r in row) + " |")
    if costs:
        lines += ["", ("The price of validity: the share of right decided verdicts (normal differences with sd 0.02, "
                   "binomial ones on 70 rows)."), "",
                  "| shape | n | m | Δ | actreg | t (before) | TOST + Holm | actreg / t |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in costs:
            ratio = f"{r['actreg'] / r['t']:.2f}" if r["t"] > 0 else "–"
            lines.append(f"| {r['shape']} | {r['n']} | {r['m']} | {r['delta']:+.3f} | {r['actreg']:.3f} | "
                         f"{r['t']:.3f} | {r['tost-holm']:.3f} | {ratio} |")
    if kept:
        lines += ["", "The power promises against the power realised at them (normal differences):", "",
                  "| promise | mean, sd of Δ | n | m | promised | realised power (promised 0.80) |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in kept:
            value = r["value"] if r["promise"] == "replicates_needed" else f"{r['value']:.4f}"
            lines.append(f"| {r['promise']} | {r['mean']:+.3f}, {r['sd']:.3f} | {r['n']} | {r['m']} | {value} | "
                         f"{r['realised']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a few cells: normal, skew-2 and step1 at n 30, m 1 and 12")
    parser.add_argument("--studies", type=int, default=2000, help="simulated studies per fixed-n cell (default 2000)")
    parser.add_argument("--race-studies", type=int, default=1000, help="simulated races per race cell (default 1000)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"the shapes (default {','.join(SHAPES)})")
    parser.add_argument("--ns", default="5,10,20,30,50,100", help="replicates per cell (default 5,10,20,30,50,100)")
    parser.add_argument("--ms", default="1,4,12,36", help="configurations per study (default 1,4,12,36)")
    parser.add_argument("--race-ms", default="1,36", help="configurations per race (default 1,36; empty: no race)")
    parser.add_argument("--no-price", dest="price", action="store_false",
                        help="leave out the price of validity and the power promises")
    parser.add_argument("--markdown", help="also write the tables as Markdown to this file")
    parser.add_argument("--json", help="also write every cell as JSON to this file")
    args = parser.parse_args(argv)
    if args.quick:
        cells = calibrate(("normal", "skew-2", "step1"), (30,), (1, 12), min(args.studies, 1000), ("actreg",), (), 0)
        costs, kept = [], []
    else:
        ints = lambda text: tuple(int(v) for v in text.split(",") if v.strip())  # noqa: E731
        shapes = tuple(v for v in args.shapes.split(",") if v)
        unknown = sorted(set(shapes) - set(SHAPES))
        if unknown:
            parser.error(f"--shapes: unknown {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
        cells = calibrate(shapes, ints(args.ns), ints(args.ms), args.studies, tuple(PROCEDURES),
                          ints(args.race_ms), args.race_studies)
        costs = price((10, 30, 100), (1, 4), args.studies) if args.price else []
        kept = promises(args.studies) if args.price else []
    failed = [r for r in cells if r["fail"] and r["procedure"] == "actreg"]
    print(f"{len(cells)} cells, {len(failed)} of actreg's above alpha + 3 s.e.")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown(cells, costs, kept))
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"cells": cells, "price": costs, "promises": kept}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
