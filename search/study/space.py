"""Configurations: the points of the regularization space that a study evaluates.

Choosing is kept apart from evaluating: this module turns a :class:`SpaceSpec` into
configurations (all of them for the grid, one at a time from an Optuna trial for TPE)
and never touches Keras.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search.study.spec import FloatRange, SpaceSpec, StudySpec
from search.study.validation import given

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Configuration:
    """One regularization setting. ``norm == "none"`` is the baseline and has no other fields.

    ``strength`` is the regularization factor; for ``l1_l2`` it is used for both terms
    unless ``l1_ratio`` is set (then l1 = strength * ratio, l2 = strength * (1 - ratio)).
    """

    norm: str
    strength: float | None = None
    placement: str | None = None
    l1_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.norm == "none":
            if (self.strength, self.placement, self.l1_ratio) != (None, None, None):
                raise ValueError("the baseline (norm 'none') takes no strength, placement or l1_ratio")
        elif self.strength is None or self.placement is None:
            raise ValueError(f"norm {self.norm!r} needs a strength and a placement")
        if self.l1_ratio is not None and self.norm != "l1_l2":
            raise ValueError("l1_ratio applies to norm 'l1_l2' only")

    @property
    def is_baseline(self) -> bool:
        return self.norm == "none"

    @property
    def params(self) -> dict[str, Any]:
        """The Optuna parameters of this configuration (only the fields that apply)."""
        out: dict[str, Any] = {"norm": self.norm}
        for name in ("strength", "placement", "l1_ratio"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Configuration:
        return cls(
            norm=params["norm"],
            strength=params.get("strength"),
            placement=params.get("placement"),
            l1_ratio=params.get("l1_ratio"),
        )

    @property
    def label(self) -> str:
        if self.is_baseline:
            return "none"
        ratio = "" if self.l1_ratio is None else f" ratio={self.l1_ratio:g}"
        return f"{self.norm}({self.strength:g}{ratio}) {self.placement}"


def config_key(config: Configuration) -> str:
    """A canonical, exact key of ``config`` (floats by their shortest round-trip repr)."""
    return json.dumps(config.params, sort_keys=True)


def block_key(config: Configuration, block: int | None) -> str:
    """The queue's key of ``config``'s replicates in a race's ``block`` (``None``: no race)."""
    return config_key(config) if block is None else f"{config_key(config)}#{block}"


def grid(space: SpaceSpec) -> list[Configuration]:
    """All configurations of a grid space, in file order; the baseline appears once."""
    if isinstance(space.strength, FloatRange) or isinstance(space.l1_ratio, FloatRange):
        raise ValueError("a grid needs lists of values, not ranges")  # noqa: TRY004 - a wrong value, said as such
    out: list[Configuration] = []
    for norm in space.norm:
        if norm == "none":
            out.append(Configuration("none"))
            continue
        ratios: tuple[float | None, ...] = (None,)
        if norm == "l1_l2" and space.l1_ratio is not None:
            ratios = space.l1_ratio
        for strength, placement, ratio in itertools.product(space.strength, space.placement, ratios):
            out.append(Configuration(norm, strength, placement, ratio))
    return out


def suggest(trial: optuna.trial.BaseTrial, space: SpaceSpec) -> Configuration:
    """Ask an Optuna trial for one configuration of ``space`` (conditional on the norm)."""
    norm = trial.suggest_categorical("norm", list(space.norm))
    if norm == "none":
        return Configuration("none")
    strength = _suggest_value(trial, "strength", space.strength)
    placement = trial.suggest_categorical("placement", list(space.placement))
    ratio = None
    if norm == "l1_l2" and space.l1_ratio is not None:
        ratio = _suggest_value(trial, "l1_ratio", space.l1_ratio)
    return Configuration(norm, strength, placement, ratio)


def distributions(config: Configuration, space: SpaceSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distributions under which ``config``'s parameters were chosen."""
    import optuna

    dists: dict[str, optuna.distributions.BaseDistribution] = {
        "norm": optuna.distributions.CategoricalDistribution(list(space.norm)),
    }
    if not config.is_baseline:
        dists["strength"] = _distribution(space.strength)
        dists["placement"] = optuna.distributions.CategoricalDistribution(list(space.placement))
        if config.l1_ratio is not None and space.l1_ratio is not None:
            dists["l1_ratio"] = _distribution(space.l1_ratio)
    return dists


def iter_param_names(space: SpaceSpec) -> Iterator[str]:
    """Names of the swept parameters, in a stable order (for ``param_<name>`` columns)."""
    yield "norm"
    if any(n != "none" for n in space.norm):
        yield "strength"
        yield "placement"
    if space.l1_ratio is not None:
        yield "l1_ratio"


def _suggest_value(trial: optuna.trial.BaseTrial, name: str, values: tuple[float, ...] | FloatRange) -> float:
    if isinstance(values, FloatRange):
        return trial.suggest_float(name, values.low, values.high, log=values.log)
    return trial.suggest_categorical(name, list(values))


def _distribution(values: tuple[float, ...] | FloatRange) -> optuna.distributions.BaseDistribution:
    import optuna

    if isinstance(values, FloatRange):
        return optuna.distributions.FloatDistribution(values.low, values.high, log=values.log)
    return optuna.distributions.CategoricalDistribution(list(values))


def program_of(config: Configuration) -> str:
    """The compiled program that trains ``config``: one per placement, which the configurations of a
    placement share (their penalty factors are numbers the program reads, one pair per model), and
    one for the baseline.

    The baseline keeps a program of its own: a zero penalty adds exactly nothing to the value or
    the gradient, but under XLA the penalty's presence changes how the rest is fused, and with it
    the rounding (the tests compare the bits).
    """
    return "none" if config.is_baseline else given(config.placement, "placement")


def program_groups(configs: Sequence[Configuration], per_program: int) -> list[tuple[Configuration, ...]]:
    """``configs`` in groups that one program trains together: at most ``per_program`` of one program
    (see :func:`program_of`) per group, in the order given, as few groups as that allows and of
    sizes that differ by at most one.

    The groups depend on the configurations and ``per_program`` only, so that a study trains
    every configuration in the same company whoever claims it (see ``models_per_program``).
    """
    if per_program < 1:
        raise ValueError("per_program must be positive")
    by_program: dict[str, list[Configuration]] = {}
    for config in configs:
        by_program.setdefault(program_of(config), []).append(config)
    out = []
    for members in by_program.values():
        n_groups = -(-len(members) // per_program)
        base, extra = divmod(len(members), n_groups)
        start = 0
        for i in range(n_groups):
            size = base + (1 if i < extra else 0)
            out.append(tuple(members[start:start + size]))
            start += size
    return out


def planned(spec: StudySpec) -> int:
    """How many configurations the study of ``spec`` has when it is complete: its grid, or ``n_trials``."""
    return given(spec.n_trials, "n_trials") if spec.sampler == "tpe" else len(grid(spec.space))
