"""A study's trials as one runner reads them: through the study's cache, or past it where it must.

The base of :class:`search.store.claims.StudyQueue`; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from search.store.schema import KEY_ATTR, RACE_ATTR, SUPERSEDED_ATTR
from search.store.storage import close_storage
from search.study.space import Configuration, config_key

if TYPE_CHECKING:
    import optuna


def trial_key(trial: optuna.trial.FrozenTrial) -> str | None:
    """The configuration key of ``trial``; ``None`` for a TPE trial not yet sampled."""
    key = trial.user_attrs.get(KEY_ATTR)
    if key is None and trial.params:
        key = config_key(Configuration.from_params(trial.params))
    return key


def _live_states():
    import optuna

    S = optuna.trial.TrialState
    return (S.WAITING, S.RUNNING, S.COMPLETE)


@dataclass(frozen=True)
class Claim:
    """A trial this runner holds: the Optuna trial and its storage id."""

    trial: optuna.Trial
    trial_id: int

    @property
    def number(self) -> int:
        return self.trial.number


def joined_trial(first: optuna.trial.FrozenTrial, last: optuna.trial.FrozenTrial, value: float, user_attrs: dict,
                 system_attrs: dict, intermediate_values: dict[int, float]) -> optuna.trial.FrozenTrial:
    """A complete trial that stands for the blocks ``first`` to ``last`` of one configuration (a race's):
    the first block's number, id, parameters and start, the last's end, and the joined record.

    Readers name the configuration by the first block's trial, so the id is its: Optuna's
    ``FrozenTrial`` takes it as an argument but keeps it private (``_trial_id``), which
    ``tests/test_store_contract.py`` pins.
    """
    import optuna

    return optuna.trial.FrozenTrial(
        number=first.number, state=optuna.trial.TrialState.COMPLETE, value=value, values=None,
        datetime_start=first.datetime_start, datetime_complete=last.datetime_complete, params=first.params,
        distributions=first.distributions, user_attrs=user_attrs,
        system_attrs={**first.system_attrs, **system_attrs}, intermediate_values=intermediate_values,
        trial_id=first._trial_id)


class StudyTrials:
    """The trials of one study in one storage (``storage``: the heartbeat-enabled one it was opened on)."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.RDBStorage, grace: int) -> None:
        self.study = study
        self.storage = storage
        self.grace = grace
        self.study_id = storage.get_study_id_from_name(study.study_name)

    def trials(self, states: Sequence | None = None) -> list[optuna.trial.FrozenTrial]:
        """The study's trials in ``states``, read through the study's cache.

        Optuna's cache keeps finished trials and reads unfinished and new ones again on
        every call: claims see fresh states, and the large attributes of complete trials
        are read once (listing them all cost 0.1 s per call on the seed-circles grid).
        """
        return self.study.get_trials(deepcopy=False, states=tuple(states) if states is not None else None)

    def _read(self, states: Sequence) -> list[optuna.trial.FrozenTrial]:
        """The study's trials in ``states``, read from the storage past the study's cache (which
        would read every unfinished trial again, the whole grid at first)."""
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=tuple(states))

    def close(self) -> None:
        """Close this runner's connections to the storage. On SQLite the last connection to close
        folds the write-ahead log into the database file: the study's file is whole when the run
        returns, and a later reader writes nothing."""
        close_storage(self.storage)

    def completed(self) -> list[optuna.trial.FrozenTrial]:
        """The study's complete trials."""
        import optuna

        return self.trials((optuna.trial.TrialState.COMPLETE,))

    def completed_count(self) -> int:
        """Configurations with a complete trial."""
        import optuna

        return len({trial_key(t) for t in self.trials((optuna.trial.TrialState.COMPLETE,))})

    def completed_twin(self, key: str) -> optuna.trial.FrozenTrial | None:
        """A complete trial of the configuration ``key``, if any."""
        import optuna

        return next((t for t in self.trials((optuna.trial.TrialState.COMPLETE,)) if trial_key(t) == key), None)

    def race(self) -> list[dict]:
        """The race's looks taken so far (read afresh: another runner may have taken one)."""
        return list(self.storage.get_study_user_attrs(self.study_id).get(RACE_ATTR, []))

    def _id(self, trial: optuna.trial.FrozenTrial) -> int:
        return self._trial_id(trial.number)

    def _trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def last_number(self, known: int = -1) -> int:
        """The study's highest trial number (-1: no trial), found from ``known`` (a number that
        exists) up in a few lookups: Optuna numbers a study's trials 0, 1, 2, ... as it creates them."""
        def exists(number: int) -> bool:
            try:
                self._trial_id(number)
            except KeyError:
                return False
            return True

        low, step = known, 1
        while exists(low + step):
            low, step = low + step, step * 2
        high = low + step  # low exists (or is -1), high does not
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if exists(middle) else (low, middle)
        return low

    def counted_before(self, claim: Claim) -> int:
        """Live trials numbered before ``claim``'s (TPE's ``n_trials`` counts these)."""
        return sum(1 for t in self.trials(_live_states())
                   if t.number < claim.number and SUPERSEDED_ATTR not in t.user_attrs)

    def counted(self) -> int:
        return sum(1 for t in self.trials(_live_states()) if SUPERSEDED_ATTR not in t.user_attrs)

    def running_elsewhere(self, mine: Iterable[int] = ()) -> list[optuna.trial.FrozenTrial]:
        """RUNNING trials that other runners hold."""
        import optuna

        own = set(mine)
        return [t for t in self._read((optuna.trial.TrialState.RUNNING,)) if self._id(t) not in own]
