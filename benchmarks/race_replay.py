"""Replay a race on a stored study of fixed replicates: how often it reaches the full study's verdicts, how
often it errs, and how many fits it spends.

A race (``[race]`` in a study file, see docs/study-files.md) looks at its configurations after
``min_replicates``, then at doubling numbers of replicates up to ``max_replicates``, and stops a
configuration as soon as it has a verdict against the baseline (or cannot reach one). This
replays that rule, with ``search.results.race.race_decisions`` itself, on the per-replicate
test metric of a study that ran every configuration on every replicate: each of ``--orders``
random orders of the replicates is one race (the same order for every configuration: a
replicate is a pair). It reports, against the full study's fixed-n verdicts:

* ``agree``: the share of configurations whose race verdict is the full study's;
* ``reached``: the share of the full study's decided verdicts (better, worse, equivalent) that
  the race reaches;
* ``wrong_on_equivalent``: the share of races' verdicts ``better``/``worse`` on configurations the
  full study calls ``equivalent`` (should be at most alpha), and ``any_wrong``: the share of
  races with any verdict contradicting the full study's decided one;
* ``fits``: the fits a race spends as a share of the full study's (the baseline runs as long as
  any configuration races).

    .venv/bin/python -m search run studies/seed-circles-resampled.toml --seeds 100 --storage sqlite:///full.db
    .venv/bin/python benchmarks/race_replay.py --storage sqlite:///full.db --study seed-circles-resampled --orders 200
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", required=True, help="the storage URL of a study run on fixed replicates")
    parser.add_argument("--study", required=True, help="the study's name")
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--min-replicates", type=int, default=5)
    parser.add_argument("--every", type=int, help="look every so many replicates (default: doubling)")
    parser.add_argument("--max-replicates", type=int, help="default: every replicate the study has")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--futility", type=float, default=1.0, help="standard errors of optimism; negative: none")
    parser.add_argument("--rope", type=float, help="default: the metric's")
    parser.add_argument("--seed", type=int, default=0, help="of the orders")
    args = parser.parse_args(argv)

    import optuna

    from search.results.race import race_decisions
    from search.results.records import configuration_of, finite_trials, trial_metrics
    from search.results.stats import default_rope, verdicts
    from search.store import schema
    from search.study.metrics import METRICS
    from search.study.spec import RaceSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = finite_trials(optuna.load_study(study_name=args.study, storage=args.storage).get_trials())
    base = next((t for t in trials if configuration_of(t).is_baseline), None)
    if base is None:
        sys.exit("error: the study has no complete baseline to race against")
    metric = trial_metrics(base)[0]

    def by_seed(t) -> dict[int, float]:
        a = t.user_attrs
        return dict(zip(a[schema.SEEDS_ATTR], a[schema.per_seed("test", metric)]))

    reference = by_seed(base)
    others = [t for t in trials if t is not base]
    seeds = sorted(set(reference).intersection(*(by_seed(t) for t in others)))[:args.max_replicates]
    sign = -1.0 if METRICS[metric].minimize else 1.0
    g = np.array([[sign * (by_seed(t)[s] - reference[s]) for s in seeds] for t in others])  # improvements
    m, n = g.shape
    rope = args.rope or default_rope(metric, np.mean([reference[s] for s in seeds]))
    full = [v["verdict"] for v in verdicts(list(g), rope, alpha=args.alpha)]
    looks = RaceSpec(args.min_replicates, n, args.every).looks(n)
    futility = None if args.futility < 0 else args.futility
    rng = np.random.default_rng(args.seed)
    agree = reached = wrong_eq = 0
    any_wrong, fits, stopped_at = 0, [], []
    decided = [j for j in range(m) if full[j] != "undecided"]
    equivalent = [j for j in range(m) if full[j] == "equivalent"]
    for _ in range(args.orders):
        order = rng.permutation(n)
        racing, verdict, used, base_used = list(range(m)), ["undecided"] * m, [0] * m, 0
        for k, look in enumerate(looks):
            if not racing:
                break
            rows = race_decisions([g[j, order[:look]] for j in racing], rope, k, looks, m, args.alpha, futility)
            base_used = look
            still = []
            for j, row in zip(racing, rows):
                used[j], verdict[j] = look, row["verdict"]
                if not row["stopped"]:
                    still.append(j)
            racing = still
        fits.append(sum(used) + base_used)
        stopped_at.extend(used)
        agree += sum(verdict[j] == full[j] for j in range(m))
        reached += sum(verdict[j] == full[j] for j in decided)
        wrong_eq += sum(verdict[j] in ("better", "worse") for j in equivalent)
        any_wrong += any(verdict[j] not in ("undecided", full[j]) for j in decided) or \
            any(verdict[j] in ("better", "worse") for j in equivalent)
    result = {
        "study": args.study, "metric": metric, "configurations": m, "replicates": n, "rope": rope,
        "alpha": args.alpha, "looks": list(looks), "futility": futility, "orders": args.orders,
        "full_verdicts": {k: full.count(k) for k in ("better", "worse", "equivalent", "undecided")},
        "agree": round(agree / (args.orders * m), 4),
        "reached": round(reached / max(1, args.orders * len(decided)), 4),
        "wrong_on_equivalent": round(wrong_eq / max(1, args.orders * len(equivalent)), 5),
        "any_wrong": round(any_wrong / args.orders, 4),
        "fits": round(float(np.mean(fits)) / (n * (m + 1)), 4),
        "mean_replicates_per_configuration": round(float(np.mean(stopped_at)), 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
