"""One declaration of what is stored and exported: writers and readers keep to it, and the docs come from it."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import optuna
import pytest
from conftest import seed_result

from search.results.records import (
    curves_frame,
    per_seed_frame,
    summary_frame,
    trial_record,
)
from search.results.stats import baseline_comparison
from search.store import schema
from search.study.spec import DataSpec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "columns.md"
ROOT = Path(__file__).resolve().parents[1] / "search"
REGENERATE = """python -c "from search.store import schema; print(schema.document(), end='')" > docs/columns.md"""
PARTS = {"<split>": "(train|test|validation)", "<metric>": "(accuracy|f1|r2|mae)",
         "<history>": "((test_)?(loss|accuracy|f1|r2|mae))",
         "<objective>": "(accuracy|f1|r2|mae)", "<k>": r"\d+", "<p>": r"\w+"}


def _patterns(fields: tuple[schema.Field, ...]) -> list[re.Pattern]:
    out = []
    for field in fields:
        for name in field.name.split(","):
            text = re.escape(name.strip())
            for part, regex in PARTS.items():
                text = text.replace(re.escape(part), regex)
            out.append(re.compile(text + "$"))
    return out


def _undeclared(names, fields) -> list[str]:
    patterns = _patterns(fields)
    return sorted(n for n in names if not any(p.match(n) for p in patterns))


def _trial(validated: bool, diverged: bool = False, baseline: bool = False) -> optuna.trial.FrozenTrial:
    losses = [1.0, float("nan")] if diverged else [1.0, 0.5]
    results = [seed_result(k, losses, 0.6) for k in range(3)]
    if validated:
        results = [dataclasses.replace(r, validation={"loss": 0.4, "accuracy": 0.7}) for r in results]
    record = trial_record(results, 2, 1, rows=(20, 50, 10) if validated else (30, 70))
    C = optuna.distributions.CategoricalDistribution
    params = {"norm": "none"} if baseline else {"norm": "l1", "strength": 1e-4, "placement": "pre"}
    return optuna.trial.create_trial(
        params=params, value=record.value,
        distributions={k: d for k, d in {"norm": C(["none", "l1"]), "strength": C([1e-4]),
                                         "placement": C(["pre", "post"])}.items() if k in params},
        user_attrs={**record.user_attrs, schema.KEY_ATTR: "{}", schema.LABEL_ATTR: "l1(0.0001) pre"},
        system_attrs=record.system_attrs)


@pytest.mark.parametrize("validated", [False, True])
def test_every_attribute_a_trial_stores_is_declared(validated):
    assert _undeclared(_trial(validated).user_attrs, schema.TRIAL_ATTRS) == []
    assert _undeclared(_trial(validated).system_attrs, schema.TRIAL_ATTRS) == []
    assert _undeclared(_trial(validated, diverged=True).user_attrs, schema.TRIAL_ATTRS) == []


@pytest.mark.parametrize("validated", [False, True])
def test_every_exported_column_is_declared(validated):
    trials = [_trial(validated)]
    names = ["norm", "strength", "placement"]
    assert _undeclared(summary_frame(trials, names).columns, schema.SUMMARY_COLUMNS) == []
    assert _undeclared(per_seed_frame(trials, names, DataSpec()).columns, schema.PER_SEED_COLUMNS) == []
    assert _undeclared(curves_frame(trials).columns, schema.CURVES_COLUMNS) == []
    comparison = baseline_comparison([_trial(validated, baseline=True), *trials], names)
    assert len(comparison) == 1
    assert _undeclared(comparison.columns, schema.STATS_COLUMNS) == []


def test_a_declared_name_that_nothing_writes_fails_the_check():
    # The check can fail: a stored name outside the declarations is reported by name.
    assert _undeclared(["test_accuracy", "test_acuracy"], schema.TRIAL_ATTRS) == ["test_acuracy"]


def test_the_docs_column_tables_are_the_schema():
    assert DOCS.read_text() == schema.document(), \
        f"docs/columns.md differs from search/store/schema.py; regenerate it: {REGENERATE}"


def test_names_are_built_one_way():
    assert schema.mean("test", "accuracy") == "mean_test_accuracy"
    assert schema.ci95("low", "test", "r2") == "ci95_low_test_r2"
    assert schema.replicate_column(3, "test", "mae") == "replicate3_test_mae"
    assert schema.rank("validation", "f1") == "rank_validation_f1"
    assert schema.per_seed("validation", "loss") == "validation_loss"
    assert schema.param("l1_ratio") == "param_l1_ratio"


# The parts of a column's name (see schema.NAMING): a literal that builds or parses one outside the
# schema is a second way of naming it.
_COLUMN_PART = re.compile(r"^(mean|std|rank|ci95|param|replicate\d*|train|test|validation)_")


def _column_literals(source: str, name: str) -> list[str]:
    """Where ``source`` (the file ``name``) builds or parses a column name by hand: an f-string made only
    of name characters that holds a column part, or a string constant that is a column's prefix
    (``"rank_test_"``)."""
    found, inner = [], set()
    for node in ast.walk(ast.parse(source)):  # an f-string comes before its parts
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            if re.fullmatch(r"[a-z0-9_{}]+", text) and _COLUMN_PART.search(text):
                found.append(f"{name}:{node.lineno}: f{text!r}")
            inner.update(id(v) for v in node.values)
        elif isinstance(node, ast.Constant) and id(node) not in inner and isinstance(node.value, str) and re.fullmatch(
                r"(mean|std|rank|ci95_(low|high)|param)_((train|test|validation)_\w*)?", node.value):
            found.append(f"{name}:{node.lineno}: {node.value!r}")
    return found


def test_column_names_are_built_by_the_schema_alone():
    found = [hit for path in sorted(ROOT.rglob("*.py")) if path.name != "schema.py"
             for hit in _column_literals(path.read_text(), str(path.relative_to(ROOT.parent)))]
    assert found == [], "column names built outside search/store/schema.py:\n" + "\n".join(found)


def test_the_column_check_finds_what_it_looks_for():
    probe = ('m = "accuracy"\na = f"mean_test_{m}"\nb = "rank_test_"\nc = f"test {m}"\nd = f"{m}_loss"\n'
             'e = "mean_test_diff"\nf = f"heatmap_test_{m}"\n')
    assert [h.split(": ", 1)[1] for h in _column_literals(probe, "probe.py")] == [
        "f'mean_test_{}'", "'rank_test_'", "'mean_test_diff'"]
