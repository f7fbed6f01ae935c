"""What a study's numbers depend on, in one record that every output carries.

A table copied into a paper loses what makes it interpretable unless it says so itself: the
penalty convention (which reverses the case study's finding), epochs and batch size, the
replicates and what varied between them, the data and its split, the library versions and the
study's fingerprint. :func:`study_setting` gathers them from the stored study;
:func:`setting_words` puts them in one sentence for captions and footers, and ``study.json``
beside the CSVs holds them whole (see ``docs/reports.md``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from search._version import __version__
from search.study.layers import LAYERS
from search.study.sources import SOURCES
from search.study.spec import DataSpec, ModelSpec, StudySpec

PENALTY_WORDS = {"mean": "mean (Keras >= 3.14: the activity penalty divided by the batch size)",
                 "sum": "sum (Keras 2.2 and 3.0-3.13: the activity penalty summed over the batch)"}


def fingerprint_digest(fingerprint: dict | None) -> str | None:
    """The first 12 hex digits of the SHA-256 of the fingerprint's canonical JSON: the same
    settings give the same digest on any machine."""
    if fingerprint is None:
        return None
    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def study_setting(spec: StudySpec, versions: dict[str, str], fingerprint: dict | None = None,
                  partial: str | None = None, comparison=None) -> dict[str, Any]:
    """The setting of ``spec``'s stored study as plain JSON data (``study.json``); ``comparison``
    (the statistics against the baseline) gives the verdicts' rope as they resolved it."""
    from search.results.stats import ALPHA
    from search.study.metrics import METRIC_LABELS

    t, d = spec.train, spec.data
    seeds = list(spec.seeds)
    return {
        "study": spec.name,
        "fingerprint": fingerprint_digest(fingerprint),
        "penalty": spec.penalty,
        "penalty_meaning": PENALTY_WORDS[spec.penalty],
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "optimizer": f"Adam (learning rate {t.learning_rate})",
        "shuffle": t.shuffle,
        "replicates": len(seeds),
        "seeds": seeds,
        "varied_between_replicates": d.variance_sources,
        "replicates_train_on": replicates_words(d),
        "data": describe_data(d),
        "model": describe_model(spec.model),
        "loss": spec.model.loss,
        "metric": METRIC_LABELS[spec.objective],
        "chosen_on": "validation rows" if d.validation is not None else "the test rows that report it",
        "rope": float(comparison["rope"].iloc[0]) if comparison is not None and len(comparison) else spec.rope,
        "alpha": ALPHA,
        "search": spec.sampler,
        "race": None if spec.race is None else {
            "looks": list(spec.race.looks(len(seeds))), "alpha": spec.race.alpha, "futility": spec.race.futility,
            "method": "O'Brien-Fleming group-sequential levels (Lan-DeMets) at alpha / configurations, per look"},
        "partial": partial,
        "versions": {**versions, "actreg": __version__},
    }


def stored_setting(stored) -> dict[str, Any]:
    """The setting of a :class:`search.store.reading.Stored` study (its verdicts' rope resolved as the
    statistics resolve it)."""
    from search.results.stats import baseline_comparison
    from search.study.space import iter_param_names

    spec = stored.spec
    comparison = baseline_comparison(stored.trials, list(iter_param_names(spec.space)), spec.objective, spec.rope,
                                     race=stored.race)
    return study_setting(spec, stored.versions, stored.fingerprint, stored.partial, comparison)


def setting_words(setting: dict[str, Any]) -> str:
    """The setting in one sentence, for a caption or a footer (plain text: the LaTeX writer escapes it)."""
    v = setting["versions"]
    seeds = setting["seeds"]
    span = f"seeds {seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[0] + len(seeds))) \
        else f"seeds {', '.join(map(str, seeds))}"
    libraries = ", ".join(f"{name} {v[key]}" for key, name in
                          (("keras", "Keras"), ("tensorflow", "TensorFlow"), ("actreg", "actreg")) if key in v)
    digest = f"; study fingerprint {setting['fingerprint']}" if setting["fingerprint"] else ""
    race = setting.get("race")
    raced = (f"; raced: looks at {', '.join(map(str, race['looks']))} replicates, each configuration stopped at its "
             "verdict" if race else "")
    return (f"Setting: penalty convention {setting['penalty_meaning']}; {setting['epochs']} epochs, batch size "
            f"{setting['batch_size']}, {setting['optimizer']}; {setting['replicates']} replicates ({span}), varied "
            f"between them: {setting['varied_between_replicates']}{raced}; data: {setting['data'].replace('`', '')}; "
            f"{libraries}{digest}.")


def write_setting(setting: dict[str, Any], path) -> None:
    """``setting`` as ``study.json`` (UTF-8, indented), atomically."""
    from search.results.records import write_atomically

    write_atomically(path, lambda f: f.write(json.dumps(setting, indent=2, ensure_ascii=False) + "\n"),
                     encoding="utf-8")


def sidecar_path(csv_path) -> str:
    """Where ``actreg export --out FILE.csv`` writes the setting: ``FILE.study.json``."""
    import os

    root, ext = os.path.splitext(os.fspath(csv_path))
    return (root if ext.lower() == ".csv" else os.fspath(csv_path)) + ".study.json"


def describe_data(d: DataSpec) -> str:
    """The data section of a study in words."""
    # Where each replicate draws its own, the seed stands for the number the file leaves out.
    # Words in a number's field, for the description only (a spec copy that nothing else reads).
    seed_words: Any = "the replicate's seed"
    shown = replace(d, random_state=seed_words) if d.resample == "draw" else d
    shown = replace(shown, split_seed=seed_words) if d.resample == "split" else shown
    what = SOURCES[d.source].describe(shown)
    if d.test_size is not None:
        split = (f"a {'stratified ' if d.stratify else ''}random {1 - d.test_size:.0%}/{d.test_size:.0%} "
                 f"train/test split (split_seed = {shown.split_seed})")
    elif d.n_train is not None and shown.split_seed is not None:
        split = (f"{d.n_train} training rows drawn {'stratified ' if d.stratify else ''}at random "
                 f"(split_seed = {shown.split_seed}), the rest test")
    elif d.n_train is not None:
        split = f"the first {d.n_train} rows train, the rest test"
    else:
        split = "as split in the file"
    held = "" if d.validation is None else (f"; {d.validation:.0%} of the training rows held out for validation "
                                           f"(drawn with split_seed = {shown.split_seed or 0})")
    return f"{what}; {split}{held}" + ("; inputs standardized on the training rows" if d.standardize else "")


def replicates_words(d: DataSpec) -> str:
    """What each replicate (seed) trains and is tested on, in one sentence."""
    return {"none": "Every seed trains and is tested on the same rows (one draw of the data).",
            "split": "Replicate s splits the data with split_seed = s, the same in every configuration.",
            "draw": "Replicate s draws its own sample with random_state = s, the same in every configuration.",
            }[d.resample]


def describe_model(model: ModelSpec) -> str:
    """The model section of a study in words."""
    if model.builder is not None:
        return f"built by `{model.builder}`"
    parts = []
    for layer in model.layers:
        args = LAYERS[layer.type].describe(layer)
        parts.append(f"{layer.type}({args}{', regularized' if layer.regularize else ''})")
    return ", ".join(parts)
