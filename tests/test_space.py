from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from search.study.parse import load_spec
from search.study.space import (
    Configuration,
    distributions,
    grid,
    iter_param_names,
    program_groups,
    program_of,
    suggest,
)
from search.study.spec import FloatRange, SpaceSpec

REPO = Path(__file__).resolve().parents[1]


def test_case_study_grid_has_one_baseline_and_37_configurations():
    space = load_spec(REPO / "studies" / "seed-circles.toml").space
    configs = grid(space)
    assert len(configs) == 1 + 3 * 6 * 2
    assert len(set(configs)) == len(configs)
    assert [c for c in configs if c.is_baseline] == [Configuration("none")]


def test_tutorial_grid_is_the_three_variants():
    configs = grid(load_spec(REPO / "studies" / "seed-tutorial.toml").space)
    assert configs == [Configuration("none"), Configuration("l1", 1e-4, "pre"), Configuration("l1", 1e-4, "post")]


@pytest.mark.parametrize("space,expected", [
    (SpaceSpec(norm=("none",)), 1),
    (SpaceSpec(norm=("l1",), strength=(1e-3, 1e-2), placement=("pre",)), 2),
    (SpaceSpec(norm=("l1_l2",), strength=(1e-3,), placement=("pre", "post"), l1_ratio=(0.0, 0.5, 1.0)), 6),
    (SpaceSpec(norm=("none", "l1", "l1_l2"), strength=(1e-3,), placement=("post",), l1_ratio=(0.5,)), 3),
])
def test_grid_sizes(space, expected):
    assert len(grid(space)) == expected


def test_params_round_trip_and_labels():
    for config in grid(SpaceSpec(norm=("none", "l1_l2"), strength=(1e-3,), l1_ratio=(0.25,))):
        assert Configuration.from_params(config.params) == config
    assert Configuration("l1", 1e-4, "pre").label == "l1(0.0001) pre"


@pytest.mark.parametrize("kwargs", [
    {"norm": "none", "strength": 1e-3},
    {"norm": "l1", "strength": None, "placement": "pre"},
    {"norm": "l1", "strength": 1e-3, "placement": "pre", "l1_ratio": 0.5},
])
def test_invalid_configurations_are_refused(kwargs):
    with pytest.raises(ValueError):
        Configuration(**kwargs)


def test_suggest_is_conditional_on_the_norm():
    space = SpaceSpec(norm=("none", "l1_l2"), strength=FloatRange(1e-6, 1e-1, True), placement=("pre", "post"),
                      l1_ratio=FloatRange(0.0, 1.0))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        config = suggest(trial, space)
        assert set(trial.params) == set(config.params)
        assert set(distributions(config, space)) == set(config.params)
        seen.add(config.norm)
        study.tell(trial, 0.0)
    assert seen == {"none", "l1_l2"}
    assert list(iter_param_names(space)) == ["norm", "strength", "placement", "l1_ratio"]


def test_program_groups_keep_placements_apart_and_the_baseline_alone():
    configs = grid(load_spec(REPO / "studies" / "seed-circles.toml").space)
    groups = program_groups(configs, 2)
    assert sorted(map(repr, (c for g in groups for c in g))) == sorted(map(repr, configs))  # each once
    assert all(len({program_of(c) for c in g}) == 1 for g in groups)
    assert (Configuration("none"),) in groups
    for program in ("pre", "post"):
        mine = [g for g in groups if program_of(g[0]) == program]
        assert [len(g) for g in mine] == [2] * 9
        assert [c for g in mine for c in g] == [c for c in configs if program_of(c) == program]  # grid order


@pytest.mark.parametrize("n, per_program, sizes", [
    (5, 2, [2, 2, 1]),
    (7, 3, [3, 2, 2]),  # as few groups as the limit allows, sizes within one of each other
    (4, 10, [4]),
    (3, 1, [1, 1, 1]),
])
def test_program_groups_are_balanced(n, per_program, sizes):
    configs = [Configuration("l1", 10.0 ** -k, "pre") for k in range(n)]
    assert [len(g) for g in program_groups(configs, per_program)] == sizes
    assert program_groups(configs, per_program) == program_groups(list(configs), per_program)


def test_program_groups_need_room_for_one():
    with pytest.raises(ValueError):
        program_groups([Configuration("none")], 0)
