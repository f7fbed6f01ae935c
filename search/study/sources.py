"""Data sources of ``[data]``: one record per source, which the spec, loader and report look up.

A source says which task its targets suit, which table keys it takes and how they are read,
how many rows it has where that is known without reading it, how it is split by default,
how its rows are loaded and how a report names it. Adding a data source is adding one entry
to :data:`SOURCES`, and its tests.

Nothing is downloaded: every source ships with scikit-learn, is generated, or is the user's
file. Loaders import scikit-learn only when called, so that the CLI rejects a bad study file
in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.study.readers import adding_task, read_csv, read_npz
from search.study.validation import check, choice, get, given

if TYPE_CHECKING:
    import numpy as np

    from search.study.spec import DataSpec

DIGITS_VIEWS = {"flat": (64,), "image": (8, 8, 1), "sequence": (8, 8)}  # how a digit's 8 x 8 pixels are shaped


@dataclass(frozen=True)
class Source:
    """Everything actreg knows of one data source.

    ``parse(table, source, folder)`` reads the source's own keys (``keys``) into
    :class:`~search.study.spec.DataSpec` fields (``folder`` resolves relative paths).
    ``load(spec)`` returns inputs and targets ``(x, y)``, or, with ``own_split``, the four
    arrays ``(x_train, y_train, x_test, y_test)``; it raises :class:`search.study.readers.DataError`.
    ``describe(spec)`` names the data in words. ``task`` is the task its targets suit
    (``None``: any, the user's file). ``rows`` is its size where known without loading it
    (a generated source's is its ``n_samples``). ``split`` is the default split: the first
    ``n_train`` rows or a random ``test_size``. ``standardize`` is ``data.standardize``'s
    default. ``draws``: a generated source, which draws a new sample for each ``random_state``.
    """

    keys: frozenset[str]
    parse: Callable[[Mapping[str, Any], str, Path], dict[str, Any]]
    load: Callable[[DataSpec], tuple[np.ndarray, ...]]
    describe: Callable[[DataSpec], str]
    task: str | None = None
    rows: int | None = None
    split: str = "test_size"
    own_split: bool = False
    standardize: bool = False
    draws: bool = False


def _sklearn():
    from sklearn import datasets

    return datasets


def _bunch(loader: str) -> Callable[[DataSpec], tuple[np.ndarray, np.ndarray]]:
    """A dataset that ships with scikit-learn, as (data, target)."""
    def load(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
        bunch = getattr(_sklearn(), loader)()
        return bunch.data, bunch.target
    return load


def _sampled(t: Mapping[str, Any], s: str, n_samples: int) -> dict[str, Any]:
    """``n_samples`` (at least 4) and ``random_state`` of a generated source."""
    n = get(t, s, "data.n_samples", int, default=n_samples)
    check(n >= 4, s, "data.n_samples", "must be at least 4")
    return {"n_samples": n, "random_state": get(t, s, "data.random_state", int, default=1)}


def _noisy(t: Mapping[str, Any], s: str) -> dict[str, Any]:
    noise = get(t, s, "data.noise", float, default=0.1)
    check(noise >= 0, s, "data.noise", "must be >= 0")
    return {**_sampled(t, s, 100), "noise": noise}


def _circles(t: Mapping[str, Any], s: str, folder: Path) -> dict[str, Any]:
    factor = get(t, s, "data.factor", float, default=0.8)
    check(0 < factor < 1, s, "data.factor", "must be between 0 and 1 (exclusive)")
    return {**_noisy(t, s), "factor": factor}


def _sequence(t: Mapping[str, Any], s: str, folder: Path) -> dict[str, Any]:
    steps = get(t, s, "data.steps", int, default=20)
    check(steps >= 2, s, "data.steps", "must be at least 2")
    return {**_sampled(t, s, 1000), "steps": steps}


def _file(t: Mapping[str, Any], s: str, folder: Path) -> dict[str, Any]:
    """``path``, relative to the study file's folder; stored absolute."""
    raw = get(t, s, "data.path", str, required=True)
    path = Path(raw) if Path(raw).is_absolute() else folder / raw
    check(path.is_file(), s, "data.path", f"no such file: {path}")
    return {"path": str(path.resolve())}


def _csv(t: Mapping[str, Any], s: str, folder: Path) -> dict[str, Any]:
    fields = {**_file(t, s, folder), "target": get(t, s, "data.target", str, required=True)}
    if "features" in t:
        features = t["features"]
        check(isinstance(features, list) and bool(features) and all(isinstance(f, str) for f in features),
              s, "data.features", "must be a non-empty list of column names")
        check(len(set(features)) == len(features), s, "data.features", "has duplicate columns")
        check(fields["target"] not in features, s, "data.features", "must not contain the target column")
        fields["features"] = tuple(features)
    return fields


def _digits(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    bunch = _sklearn().load_digits()
    x = bunch.data / 16.0  # pixel intensities 0..16 -> [0, 1]
    return x.reshape(-1, *DIGITS_VIEWS[given(spec.view, "data.view")]), bunch.target


def _no_keys(t: Mapping[str, Any], s: str, folder: Path) -> dict[str, Any]:
    return {}


SOURCES: dict[str, Source] = {
    "circles": Source(
        keys=frozenset({"n_samples", "noise", "random_state", "factor"}), parse=_circles,
        load=lambda d: _sklearn().make_circles(n_samples=d.n_samples, noise=d.noise, random_state=d.random_state,
                                               factor=d.factor),
        describe=lambda d: f"`circles` (n_samples = {d.n_samples}, noise = {d.noise}, factor = {d.factor}, "
                           f"random_state = {d.random_state})",
        task="binary", split="n_train", draws=True),
    "moons": Source(
        keys=frozenset({"n_samples", "noise", "random_state"}), parse=lambda t, s, folder: _noisy(t, s),
        load=lambda d: _sklearn().make_moons(n_samples=d.n_samples, noise=d.noise, random_state=d.random_state),
        describe=lambda d: f"`moons` (n_samples = {d.n_samples}, noise = {d.noise}, random_state = {d.random_state})",
        task="binary", split="n_train", draws=True),
    "sequence": Source(
        keys=frozenset({"n_samples", "random_state", "steps"}), parse=_sequence,
        load=lambda d: adding_task(given(d.n_samples), given(d.steps), given(d.random_state)),
        describe=lambda d: f"generated adding-problem sequences (n_samples = {d.n_samples}, steps = {d.steps}, "
                           f"random_state = {d.random_state})",
        task="binary", draws=True),
    "digits": Source(
        keys=frozenset({"view"}),
        parse=lambda t, s, folder: {"view": choice(t.get("view", "flat"), s, "data.view", tuple(DIGITS_VIEWS))},
        load=_digits, describe=lambda d: f"scikit-learn's digits, {d.view} view", task="multiclass", rows=1797),
    "diabetes": Source(
        keys=frozenset(), parse=_no_keys, load=_bunch("load_diabetes"),
        describe=lambda d: "scikit-learn's diabetes", task="regression", rows=442),
    "breast_cancer": Source(
        keys=frozenset(), parse=_no_keys, load=_bunch("load_breast_cancer"),
        describe=lambda d: "scikit-learn's breast cancer (Wisconsin diagnostic)", task="binary", rows=569,
        standardize=True),  # its 30 features range from 1e-3 to 4e3
    "csv": Source(
        keys=frozenset({"path", "target", "features"}), parse=_csv, load=read_csv,
        describe=lambda d: f"`{Path(d.path or '').name}` (target `{d.target}`)"),
    "npz": Source(
        keys=frozenset({"path"}), parse=_file, load=read_npz,
        describe=lambda d: f"`{Path(d.path or '').name}` (its own train and test arrays)", own_split=True),
}
