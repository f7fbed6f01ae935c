"""Run a study: configurations -> fits over seeds (joblib) -> trials in the Optuna storage.

Resuming is by construction: a grid configuration is written as one complete trial
(``study.add_trial``) only once all its seeds are fitted, so re-running the same
command skips what is stored and refits what was interrupted, with nothing lost or
duplicated. TPE trials are asked before they run; one left RUNNING by a killed
process is marked FAIL on the next run and a new trial takes its place.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from search import runtime
from search.checks import check_study
from search.parallel import FitTask, chunk_seeds, run_tasks
from search.results import configuration_of, summary_frame, trial_record
from search.space import Configuration, distributions, grid, iter_param_names, suggest
from search.spec import METRIC_LABELS, SpecError, StudySpec
from search.storage import SPEC_ATTR, fingerprint_diff, open_storage, spec_fingerprint

if TYPE_CHECKING:
    import optuna
    import pandas as pd


@dataclass(frozen=True)
class RunReport:
    """What a call of :func:`run_study` did; ``summary`` has one row per stored configuration."""

    study_name: str
    storage: str
    configurations_run: int
    configurations_skipped: int
    fits: int
    wall_seconds: float
    summary: pd.DataFrame


def run_study(spec: StudySpec, *, backend: str = "loky", progress: bool | None = None,
              stream: TextIO | None = None) -> RunReport:
    """Run (or resume) the study of ``spec`` and return what was done.

    ``backend`` is the joblib backend that fits the seeds ("loky", or "dask" with a
    Dask client configured). ``progress`` shows a progress bar on ``stream`` (default:
    only when it is a terminal).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    check_study(spec)  # bad data or a model that cannot take it: an error before anything is written
    stream = stream or sys.stderr
    n_jobs = runtime.resolve_n_jobs(spec.n_jobs)
    threads = runtime.threads_per_worker(n_jobs)
    sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed) if spec.sampler == "tpe" else None
    study = optuna.create_study(
        study_name=spec.name, storage=open_storage(spec.storage, create=True),
        direction="maximize" if spec.maximize else "minimize", load_if_exists=True, sampler=sampler,
    )
    _check_or_record_spec(study, spec)
    _fail_interrupted(study)

    def make_tasks(config: Configuration) -> list[FitTask]:
        return [FitTask(spec.data, spec.model, spec.train, spec.penalty, config, seeds, threads, spec.metrics)
                for seeds in chunk_seeds(spec.seeds, spec.chunk_size)]

    runner = _run_grid if spec.sampler == "grid" else _run_tpe
    ran, skipped = runner(study, spec, make_tasks, n_jobs, backend, _progress(spec, progress, stream))
    summary = summary_frame(study.get_trials(deepcopy=False), list(iter_param_names(spec.space)),
                            spec.objective, spec.maximize)
    return RunReport(spec.name, spec.storage, ran, skipped, ran * len(spec.seeds),
                     time.perf_counter() - started, summary)


def _run_grid(study, spec, make_tasks, n_jobs, backend, bar) -> tuple[int, int]:
    import optuna

    configs = grid(spec.space)
    done = {configuration_of(t) for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    pending = [c for c in configs if c not in done]
    bar.reset(total=len(pending) * len(spec.seeds))
    per_config = [make_tasks(c) for c in pending]
    tasks = [t for ts in per_config for t in ts]
    owner = [ci for ci, ts in enumerate(per_config) for _ in ts]
    parts: dict[int, dict[int, list]] = {}
    try:
        for i, results in run_tasks(tasks, n_jobs, backend):
            ci = owner[i]
            parts.setdefault(ci, {})[i] = results
            bar.update(len(results))
            if len(parts[ci]) == len(per_config[ci]):
                ordered = [r for _, rs in sorted(parts.pop(ci).items()) for r in rs]
                record = trial_record(ordered, spec.train.epochs, spec.train.record_step, spec.metrics)
                config = pending[ci]
                study.add_trial(optuna.trial.create_trial(
                    params=config.params, distributions=distributions(config, spec.space),
                    value=record.value, user_attrs=record.user_attrs,
                    intermediate_values=record.intermediate_values,
                ))
                bar.set_postfix_str(f"{config.label}: {record.value:.3f}")
    finally:
        bar.close()
    return len(pending), len(configs) - len(pending)


def _run_tpe(study, spec, make_tasks, n_jobs, backend, bar) -> tuple[int, int]:
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    stored = len(complete)
    remaining = max(0, spec.n_trials - stored)
    bar.reset(total=remaining * len(spec.seeds))
    try:
        for _ in range(remaining):
            trial = study.ask()
            config = suggest(trial, spec.space)
            twin = next((t for t in complete if configuration_of(t) == config), None)
            if twin is not None:
                # The sampler proposed a configuration already measured: same seeds, same numbers.
                for key, value in twin.user_attrs.items():
                    trial.set_user_attr(key, value)
                trial.set_user_attr("duplicate_of", twin.number)
                study.tell(trial, twin.value)
                bar.update(len(spec.seeds))
                continue
            tasks = make_tasks(config)
            parts = dict(run_tasks(tasks, n_jobs, backend))
            ordered = [r for i in range(len(tasks)) for r in parts[i]]
            record = trial_record(ordered, spec.train.epochs, spec.train.record_step, spec.metrics)
            for key, value in record.user_attrs.items():
                trial.set_user_attr(key, value)
            for step, value in record.intermediate_values.items():
                trial.report(value, step)
            study.tell(trial, record.value)
            complete.append(study.get_trials(deepcopy=False)[trial.number])
            bar.update(len(spec.seeds))
            bar.set_postfix_str(f"{config.label}: {record.value:.3f}")
    finally:
        bar.close()
    return remaining, stored


def _check_or_record_spec(study: optuna.Study, spec: StudySpec) -> None:
    current = spec_fingerprint(spec)
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        study.set_user_attr(SPEC_ATTR, current)
        study.set_user_attr("penalty", spec.penalty)
        study.set_user_attr("versions", runtime.versions())
        return
    diff = fingerprint_diff(stored, current)
    if diff:
        raise SpecError(spec.path or "<study>", "name",
                        f"study {spec.name!r} in {spec.storage} was run with other settings "
                        f"({', '.join(diff)}); give the study another name or storage")


def _fail_interrupted(study: optuna.Study) -> None:
    """Mark trials left RUNNING by a killed process as FAIL, so they are not counted."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def _progress(spec: StudySpec, enabled: bool | None, stream: TextIO) -> Any:
    from tqdm.auto import tqdm

    disable = None if enabled is None else not enabled
    return tqdm(total=0, unit="fit", desc=spec.name, file=stream, disable=disable, dynamic_ncols=True)


def summary_text(summary: pd.DataFrame, metric: str = "accuracy", limit: int = 20) -> str:
    """A short, human-readable table of the best configurations by ``metric``."""
    if summary.empty:
        return "no completed configurations"
    m = metric
    cols = [c for c in summary.columns if c.startswith("param_")]
    table = summary.sort_values([f"rank_test_{m}"] + cols, na_position="first").head(limit)
    name = METRIC_LABELS.get(m, m)
    lines = [f"{'rank':>4}  {'configuration':<28} {f'test {name} (mean ± std)':>24}  {f'train {name}':>11}  {'seeds':>5}"]
    for _, row in table.iterrows():
        config = Configuration.from_params({c[6:]: row[c] for c in cols if row[c] == row[c] and row[c] is not None})
        lines.append(
            f"{int(row[f'rank_test_{m}']):>4}  {config.label:<28} "
            f"{row[f'mean_test_{m}']:>15.3f} ± {row[f'std_test_{m}']:.3f}  "
            f"{row[f'mean_train_{m}']:>11.3f}  {int(row['n_seeds']):>5}"
        )
    if len(summary) > limit:
        lines.append(f"... {len(summary) - limit} more; see `actreg export`")
    return "\n".join(lines)
