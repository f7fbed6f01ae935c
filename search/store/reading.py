"""A stored study as a reader finds it (export, report, the dashboard): opened to read, described as stored."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from search.store.schema import RACE_ATTR, SPEC_ATTR, VERSIONS_ATTR
from search.store.storage import (
    StudyNotFound,
    close_storage,
    fingerprint_diff,
    open_storage,
    redact,
    spec_fingerprint,
)
from search.store.trials import trial_key
from search.study.race import is_over, looks_of, racing
from search.study.space import Configuration, config_key, planned
from search.study.validation import SpecError

if TYPE_CHECKING:
    import optuna

    from search.study.spec import StudySpec


def load_study(spec: StudySpec, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """The existing study of ``spec`` (in ``storage``, if open already, else opened to read);
    :class:`StudyNotFound` if never run."""
    import optuna

    storage = storage or open_storage(spec.storage, create=False, access="read", patience=spec.storage_patience)
    try:
        return optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        raise StudyNotFound(f"no study named {spec.name!r} in {redact(spec.storage)}") from None


@contextlib.contextmanager
def reading(spec: StudySpec) -> Iterator[optuna.Study]:
    """The existing study of ``spec`` for a reader (export, report), its connections closed on exit.

    A reader takes no write lock, so a runner suspended mid-write does not block it, and
    reads a file or folder that it may not write (see :func:`search.store.storage.open_storage`).
    On SQLite the last connection to close removes the write-ahead log's files, so a reader
    leaves the study's folder as it found it.
    """
    storage = open_storage(spec.storage, create=False, access="read", patience=spec.storage_patience)
    try:
        yield load_study(spec, storage)
    finally:
        close_storage(storage)


@contextlib.contextmanager
def annotating(spec: StudySpec) -> Iterator[optuna.Study]:
    """The existing study of ``spec`` for a writer of notes and artifacts (a report), closed on exit.

    Like a reader, it takes no write lock when its transactions begin (a runner suspended
    mid-write does not block it); each of its few writes waits for the lock as SQLite's
    busy timeout allows. The caller has checked that the storage can be written.
    """
    with reading(spec) as study:
        yield study


# What `actreg run` may override on the command line: a stored study that differs from its file
# only there is described as stored; any other difference is refused.
_OVERRIDDEN = {"seeds": "seeds", "train.epochs": "epochs"}


def described(spec: StudySpec, study: optuna.Study) -> tuple[StudySpec, list[str]]:
    """``spec`` as its study was stored, and a line for each way the file differs from it.

    A study run with ``--seeds`` or ``--epochs`` is described with its own seeds and epochs
    (a reader's tables and report must say what was computed); a file edited since the run
    in anything that determines the numbers is refused (:class:`SpecError`), since its
    settings describe another study. A study stored before fingerprints were kept is taken as is.
    """
    from dataclasses import replace

    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        return spec, []
    diff = fingerprint_diff(stored, spec_fingerprint(spec))
    other = [key for key in diff if key not in _OVERRIDDEN]
    if other:
        raise SpecError(spec.path or "<study>", other[0],
                        f"differs from the stored study {spec.name!r} ({', '.join(other)}): the file no longer "
                        "describes it; restore the file, or give the study another name to run it anew")
    notes = []
    if "seeds" in diff:
        spec = replace(spec, seeds=tuple(stored["seeds"]))
        notes.append(f"seeds: study {spec.name!r} was run with {len(spec.seeds)} seeds (the file says otherwise); "
                     "describing the stored study")
    if "train.epochs" in diff:
        spec = replace(spec, train=replace(spec.train, epochs=stored["train"]["epochs"]))
        notes.append(f"train.epochs: study {spec.name!r} was run for {spec.train.epochs} epochs (the file says "
                     "otherwise); describing the stored study")
    return spec, notes


@dataclass(frozen=True)
class Stored:
    """A study as a reader finds it: ``spec`` as stored (see :func:`described`), its trials and versions."""

    spec: StudySpec
    trials: list
    versions: dict
    notes: tuple[str, ...] = ()
    fingerprint: dict | None = None  # as the study recorded it (None in studies stored before fingerprints)
    race: list | None = None  # the looks a race took (see search.results.race); None without [race]

    @property
    def completed(self) -> int:
        """Configurations with a complete trial (in a race, with its first block complete)."""
        import optuna

        done = [t for t in self.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if self.race is not None:
            return len({config_key(Configuration.from_params(t.params)) for t in done})
        return len({trial_key(t) for t in done})

    @property
    def partial(self) -> str | None:
        """``"12 of 17 configurations stored"`` while the study is not complete (a race: ``"race at look 2
        of 6, 9 configurations still racing"`` until it ends), else ``None``."""
        total = planned(self.spec)
        if self.completed < total:
            return f"{self.completed} of {total} configurations stored"
        if self.race is None or is_over(self.spec, self.race):
            return None
        return (f"race at look {len(self.race)} of {len(looks_of(self.spec))}, "
                f"{len(racing(self.spec, self.race)) - 1} configurations still racing")


def read_stored(spec: StudySpec) -> Stored:
    """The stored study of ``spec`` for a reader; :class:`StudyNotFound` if never run, :class:`SpecError`
    if the file no longer describes it."""
    with reading(spec) as study:
        trials = study.get_trials(deepcopy=False)
        spec, notes = described(spec, study)
        versions = study.user_attrs.get(VERSIONS_ATTR, {})
        fingerprint = study.user_attrs.get(SPEC_ATTR)
        race = list(study.user_attrs.get(RACE_ATTR, [])) if spec.race is not None else None
    return Stored(spec, trials, versions, tuple(notes), fingerprint, race)


def study_id(storage: optuna.storages.BaseStorage, name: str) -> int:
    """The storage's id of the study ``name`` (optuna-dashboard's address of its page)."""
    return storage.get_study_id_from_name(name)
