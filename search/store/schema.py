"""What a study stores and what its tables export: every name declared once.

Writers (:func:`search.results.records.trial_record`, the queue of
:mod:`search.store.claims`) and readers (the tables, statistics, figures, reports and the
dashboard) build names through the functions here, the way scikit-learn builds every
``cv_results_`` column through one ``_store``: ``mean("test", "accuracy")`` is
``mean_test_accuracy`` everywhere. The declarations below (:data:`TRIAL_ATTRS`,
:data:`STUDY_ATTRS`, :data:`SUMMARY_COLUMNS`, :data:`PER_SEED_COLUMNS`) give each name's
type, meaning and where it applies; ``docs/columns.md`` is generated from them
(``tests/test_schema.py`` says how to regenerate it) and a test keeps the two equal.

In a name, ``<split>`` is ``train``, ``test`` or ``validation`` (only with ``[data]
validation``), ``<metric>`` one of the study's metrics (the objective first), ``<k>`` a
seed's place in the study's seed order and ``<p>`` a parameter of the space.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = 3  # version of the user attributes written to each trial (1: accuracy only; 2: no status)
OK, DIVERGED = "ok", "diverged"
SPLITS = ("train", "test", "validation")

# ---------------------------------------------------------------------------- trial attributes
# Written by trial_record for every configuration; per-seed lists are in seed order.
SCHEMA_ATTR = "schema"
METRIC_ATTR = "metric"
METRICS_ATTR = "metrics"
RANKED_ON = "ranked_on_seeds"
SEEDS_ATTR = "seeds"
STATUS_ATTR = "status"
N_DIVERGED_ATTR = "n_diverged"
DIVERGED_SEEDS_ATTR = "diverged_seeds"
DIVERGED_EPOCHS_ATTR = "diverged_epochs"
FIT_TIME_ATTR = "fit_time"
ACTIVATION_ATTR = "mean_activation"
ZERO_FRACTION_ATTR = "zero_fraction"
SUMMARY_ATTR = "summary"
# The learning curves are a trial *system* attribute: optuna-dashboard shows user attributes
# in one table row each, and a curves row was thousands of pixels wide.
CURVES_ATTR = "actreg:curves"
OLD_CURVES_ATTR = "curves"  # a user attribute in studies stored by earlier versions
# Written by the queue.
KEY_ATTR = "config_key"
LABEL_ATTR = "configuration"
RUNNER_ATTR = "runner"
PROCESS_ATTR = "runner_process"
SUPERSEDED_ATTR = "superseded_by"
DUPLICATE_ATTR = "duplicate_of"
FAIL_REASON_ATTR = "fail_reason"
FAIL_DETAILS_ATTR = "fail_details"
# Written by a race's runner: the block of replicates a trial holds (its seeds are those of the block).
RACE_BLOCK_ATTR = "race_block"

# ---------------------------------------------------------------------------- study attributes
SPEC_ATTR = "actreg_spec"
PENALTY_ATTR = "penalty"
VERSIONS_ATTR = "versions"
QUEUED_ATTR = "actreg_queued"
GRACE_ATTR = "heartbeat_grace"
ARTIFACTS_ATTR = "actreg_artifacts"
DIGESTS_ATTR = "actreg_artifact_digests"
RACE_ATTR = "actreg_race"
RACE_REPLICATES, RACE_REASON = "race_replicates", "race_reason"  # stats.csv's columns of a race


# ---------------------------------------------------------------------------- names with parts

def per_seed(split: str, metric: str) -> str:
    """A trial's per-seed list, and the per-seed table's column: ``test_accuracy``."""
    return f"{split}_{metric}"


def mean(split: str, metric: str) -> str:
    """``mean_test_accuracy``: the mean over seeds (a curve's column with ``split`` a history key's split)."""
    return f"mean_{split}_{metric}"


def std(split: str, metric: str) -> str:
    """``std_test_accuracy``: the sample standard deviation over seeds (ddof = 1)."""
    return f"std_{split}_{metric}"


def rank(split: str, metric: str) -> str:
    """``rank_test_accuracy``: 1 for the best mean."""
    return f"rank_{split}_{metric}"


def ci95(bound: str, split: str, metric: str) -> str:
    """``ci95_low_test_accuracy`` or ``ci95_high_...`` (``bound`` is ``low`` or ``high``)."""
    return f"ci95_{bound}_{split}_{metric}"


def replicate_column(k: int | str, split: str, metric: str) -> str:
    """``replicate3_test_accuracy``: the value of the replicate at place ``k`` of the seed order, in the
    summary table (scikit-learn's ``split3_test_score``; here a replicate, which is not always a split)."""
    return f"replicate{k}_{split}_{metric}"


REPLICATE = "replicate"  # the per-seed table's column: a seed's place in the study's seed order
# The sparsity of the regularized layers, measured on the test inputs: per seed, and its mean over seeds.
ACTIVATION, ZERO_FRACTION = "activation", "zero_fraction"
FIT_TIME = "fit_time"  # the summary's: seconds of training of the configuration's chunks, together


DIFF = "diff"  # the paired difference from the baseline: mean("test", DIFF) is "mean_test_diff"


def std_of(mean_column: str) -> str:
    """The standard deviation's column beside the mean's: ``std_test_loss`` beside ``mean_test_loss``."""
    assert is_mean(mean_column), mean_column
    return "std_" + mean_column[len("mean_"):]


def is_mean(column: str) -> bool:
    """Whether ``column`` is a mean over seeds (``mean_<split>_<quantity>``)."""
    return column.startswith("mean_")


def rows(split: str) -> str:
    """``n_test``: a trial's number of rows of ``split`` (accuracies are exact fractions of it)."""
    return f"n_{split}"


def param(name: str) -> str:
    """``param_strength``: a parameter of the configuration."""
    return f"param_{name}"


def is_param(column: str) -> bool:
    """Whether ``column`` is a parameter of the configuration (``param_<p>``)."""
    return column.startswith("param_")


def curve(stat: str, key: str) -> str:
    """A learning curve's column: ``stat`` (``mean`` or ``std``) of a history key such as ``test_accuracy``."""
    return f"{stat}_{key}"


# ---------------------------------------------------------------------------- declarations

@dataclass(frozen=True)
class Field:
    """One stored attribute or exported column: its name (a pattern, see the module), type, meaning
    and where it applies."""

    name: str
    type: str
    meaning: str
    applies: str = "always"


TRIAL_ATTRS: tuple[Field, ...] = (
    Field(SCHEMA_ATTR, "int", f"version of these attributes ({SCHEMA})"),
    Field(METRIC_ATTR, "str", "the objective metric"),
    Field(METRICS_ATTR, "list[str]", "the task's metrics, the objective first"),
    Field(SEEDS_ATTR, "list[int]", "the replicates' seeds, in the order of every per-seed list"),
    Field(STATUS_ATTR, "str", f"`{OK}`, or `{DIVERGED}` when the loss became NaN or infinite on some seed"),
    Field(N_DIVERGED_ATTR, "int", "number of seeds that diverged"),
    Field(DIVERGED_SEEDS_ATTR, "list[int]", "the seeds that diverged", f"status `{DIVERGED}`"),
    Field(DIVERGED_EPOCHS_ATTR, "list[int]", "the first epoch at which each diverged", f"status `{DIVERGED}`"),
    Field(per_seed("<split>", "<metric>"), "list[float|null]", "each seed's final value with the final weights "
          "(accuracies exact fractions of the rows); null where not finite"),
    Field(per_seed("<split>", "loss"), "list[float|null]", "each seed's final loss, activity penalty included"),
    Field(rows("<split>"), "int", "rows of the split", "fraction metrics (accuracy)"),
    Field(FIT_TIME_ATTR, "list[float]", "seconds of training per seed (a chunk's time over its seeds)"),
    Field(ACTIVATION_ATTR, "list[list[float]]", "per seed, per regularized layer: mean activated output on the "
          "test inputs"),
    Field(ZERO_FRACTION_ATTR, "list[list[float]]", "per seed, per regularized layer: fraction of those outputs "
          "exactly zero"),
    Field(mean("train", "<objective>"), "float|null", "mean over seeds on the training rows"),
    Field(std("<split>", "<objective>"), "float|null", "standard deviation over seeds (ddof = 1)"),
    Field(mean("validation", "<objective>"), "float|null", "mean over seeds on the validation rows: the trial value",
          "`[data] validation`"),
    Field(SUMMARY_ATTR, "str", "mean ± std, 95% CI, train, seeds in one line (optuna-dashboard's table)"),
    Field(CURVES_ATTR, "dict", "system attribute: `epoch` and seed mean and std of every history key at every "
          "recorded epoch"),
    Field(KEY_ATTR, "str", "the configuration as exact JSON (the queue's key)"),
    Field(LABEL_ATTR, "str", "the configuration in words (`l1(0.0001) pre`)"),
    Field(RUNNER_ATTR, "str", "host:pid of the runner that claimed the trial"),
    Field(PROCESS_ATTR, "str", "where that runner's process can be checked from (boot id, namespace, pid, start)"),
    Field(FAIL_REASON_ATTR, "str", "why the trial failed, one line", "FAIL trials"),
    Field(FAIL_DETAILS_ATTR, "str", "the end of the failed fit's traceback", "FAIL trials"),
    Field(SUPERSEDED_ATTR, "int|null", "the trial that makes this claim redundant (PRUNED, never fitted)",
          "PRUNED trials"),
    Field(DUPLICATE_ATTR, "int", "the complete trial whose numbers a TPE trial took (same configuration)",
          "TPE studies"),
    Field(RACE_BLOCK_ATTR, "int", "which block of the configuration's replicates the trial holds: 0 for the "
          "first look's, k for those added for look k; the tables join a configuration's blocks", "`[race]`"),
)

STUDY_ATTRS: tuple[Field, ...] = (
    Field(SPEC_ATTR, "dict", "the fingerprint: the study file's settings that determine the numbers"),
    Field(PENALTY_ATTR, "str", "the penalty convention (`mean` or `sum`)"),
    Field(VERSIONS_ATTR, "dict", "versions of Python and the libraries that computed the numbers"),
    Field(QUEUED_ATTR, "bool", "the grid's configurations are queued", "grid studies"),
    Field(GRACE_ATTR, "int", "seconds without a heartbeat after which a claim is retried: the first runner's "
          "`heartbeat_grace`, which every runner of the study uses"),
    Field(ARTIFACTS_ATTR, "str", "folder of the report's files as optuna-dashboard artifacts", "after `actreg report`"),
    Field(DIGESTS_ATTR, "dict", "digests of the report's files attached already", "after `actreg report`"),
    Field(RACE_ATTR, "list[dict]", "the race's looks as they were taken: replicates, and each configuration's "
          "verdict, whether it stopped, why, and its p-values", "`[race]`"),
)

_PARAMS = Field(param("<p>"), "float|str", "the configuration: `param_norm`, `param_strength`, `param_placement` "
                "(`param_l1_ratio` where swept); empty where it does not apply (the baseline has only "
                "`param_norm = none`)")
_LABEL = Field(LABEL_ATTR, "str", "the configuration in words, as tables, figures and `stats.csv` name it")
_TRIAL = Field("trial_number", "int", "the Optuna trial that holds it, as optuna-dashboard shows it")

SUMMARY_COLUMNS: tuple[Field, ...] = (
    _PARAMS, _LABEL, _TRIAL,
    Field("n_seeds", "int", "number of seeds (replicates)"),
    Field(STATUS_ATTR, "str", f"`{OK}`, or `{DIVERGED}`: then the mean, std and CI columns are empty, the rank "
          "comes after every finite configuration, and `stats.csv` leaves it out"),
    Field(N_DIVERGED_ATTR, "int", "seeds that diverged (their seeds and epochs are trial attributes)"),
    Field(mean("test", "<metric>"), "float", "mean over seeds of the final test value (the trial value without "
          "validation rows); an accuracy's mean is the total of correct predictions over seeds x rows"),
    Field(std("test", "<metric>"), "float", "sample standard deviation over seeds (ddof = 1; empty for one seed)"),
    Field(ci95("low", "test", "<objective>") + ", " + ci95("high", "test", "<objective>"), "float",
          "two-sided 95% Student-t interval of the mean: mean ± t(0.975, n−1) · std / √n"),
    Field(rank("test", "<objective>"), "int", "1 = best mean over the seeds that every finite configuration has "
          "(`ranked_on_seeds`); equal means share the best rank"),
    Field(RANKED_ON, "int", "how many seeds the ranks compare: all of them, or in a race (configurations stopped at "
          "different looks) the replicates every finite configuration shares"),
    Field(mean("train", "<metric>"), "float", "the mean on the training rows, with the final weights"),
    Field(std("train", "<objective>"), "float", "its standard deviation"),
    Field(mean("validation", "<metric>"), "float", "the mean on the validation rows (the objective's is the trial "
          "value)", "`[data] validation`"),
    Field(std("validation", "<objective>"), "float", "its standard deviation", "`[data] validation`"),
    Field(rank("validation", "<objective>"), "int", "the rank by validation mean: the one that orders the tables "
          "and places the ★", "`[data] validation`"),
    Field(mean("test", ACTIVATION), "float", "mean activated output of the regularized layers on the test inputs, "
          "over seeds and layers"),
    Field(mean("test", ZERO_FRACTION), "float", "fraction of those outputs exactly zero, likewise"),
    Field(FIT_TIME, "float", "seconds of training of the configuration, all its seeds (compilation excluded); the "
          "seeds of a chunk train as one computation, so no per-seed time is reported"),
    Field(replicate_column("<k>", "test", "<objective>"), "float", "each replicate's test value, in seed order"),
)

PER_SEED_COLUMNS: tuple[Field, ...] = (
    _PARAMS, _LABEL, _TRIAL,
    Field("seed", "int", "the replicate's seed"),
    Field(REPLICATE, "int", "its place in the study's seed order (`replicate<k>_*` of the summary)"),
    Field(per_seed("<split>", "<metric>"), "float", "the seed's final value on the split's rows"),
    Field(per_seed("<split>", "loss"), "float", "the seed's final loss, activity penalty included"),
    Field(per_seed("test", ACTIVATION), "float", "the seed's mean activated output of the regularized layers (test "
          "inputs)"),
    Field(per_seed("test", ZERO_FRACTION), "float", "the seed's fraction of those outputs exactly zero"),
    Field("data_random_state", "int", "the sample the seed trained on (with `resample = \"draw\"`, its own)",
          "generated sources"),
    Field("data_split_seed", "int", "the split the seed trained on (with `resample = \"split\"`, its own); empty for "
          "the first `n_train` rows"),
)

STATS_COLUMNS: tuple[Field, ...] = (
    _PARAMS, _LABEL, _TRIAL,
    Field("n_pairs", "int", "seeds that both the configuration and the baseline finished: Δ_k is the "
          "configuration's test metric on seed k minus the baseline's (positive: higher)"),
    Field("mean_test_diff", "float", "mean Δ"),
    Field("std_test_diff", "float", "standard deviation of Δ (ddof = 1)"),
    Field("ci95_low_test_diff, ci95_high_test_diff", "float", "95% Student-t interval of mean Δ"),
    Field("t_pvalue, t_pvalue_holm", "float", "paired t-test p-value, and Holm-corrected over the study's "
          "configurations"),
    Field("wilcoxon_pvalue, wilcoxon_pvalue_holm", "float", "Wilcoxon signed-rank p-value (zero differences "
          "dropped), and Holm-corrected"),
    Field("effect_size_dz", "float", "Cohen's d_z = mean(Δ) / sd(Δ)"),
    Field("few_seeds", "bool", "fewer than 5 pairs: the row is an anecdote (a verdict needs 30)"),
    Field("rope", "float", "the region of practical equivalence, ± in the metric's units"),
    Field("verdict", "str", "`better`, `worse`, `equivalent` or `undecided`; at most a 5% chance of any wrong "
          "verdict in the study (studentized bootstrap; the conditions in docs/reports.md)"),
    Field("withheld", "str", "why the verdict was withheld (then `undecided`): `fewer than 30 replicates`, "
          "`no spread`, `not finite`, or `skewed` (the bootstrap alone would have decided, Cantelli's bound did "
          "not); empty otherwise"),
    Field("p_better, p_worse, p_equivalent", "float", "each region's p-value (studentized bootstrap) times the "
          "number of configurations; a verdict needs one of at most 0.05"),
    Field("detectable_diff", "float", "the smallest |Δ| detectable with 80% power at these replicates and this sd "
          "of Δ", "undecided"),
    Field("replicates_needed", "int", "the replicates that would decide it, were Δ its observed mean", "undecided"),
    Field(RACE_REPLICATES, "int", "the replicates at the look where the configuration stopped (or the last look "
          "taken); its verdict and p-values are that look's, scaled so that 0.05 decides", "`[race]`"),
    Field(RACE_REASON, "str", "why it stopped: its verdict, `futile` (no verdict reachable by the last look), "
          "`last look`, `diverged`, `baseline diverged`; `racing` while it races", "`[race]`"),
)

CURVES_COLUMNS: tuple[Field, ...] = (
    _PARAMS, _LABEL, _TRIAL,
    Field("epoch", "int", "a recorded epoch (every `record_every`, and the last)"),
    Field(", ".join(curve(stat, f"<split>_{q}") for q in ("<metric>", "loss") for stat in ("mean", "std")), "float",
          "seed mean and std after the epoch: `train` as `fit` reports it (over the epoch's batches; Keras names "
          "it `accuracy`), `test` evaluated with the epoch's final weights"),
)

TABLES = {
    "Summary (`actreg export`, `summary.csv`): one row per configuration": SUMMARY_COLUMNS,
    "Per seed (`actreg export --per-seed`, `seeds.csv`): one row per configuration and seed": PER_SEED_COLUMNS,
    "Statistics against the baseline (`stats.csv`, `RunReport.comparison`)": STATS_COLUMNS,
    "Learning curves (`curves.csv`): one row per configuration and recorded epoch": CURVES_COLUMNS,
    "Trial attributes (Optuna user attributes unless said)": TRIAL_ATTRS,
    "Study attributes": STUDY_ATTRS,
}


def names(fields: tuple[Field, ...]) -> list[str]:
    """The plain names of ``fields``, in order (those with a ``<part>`` left out)."""
    return [n.strip() for f in fields for n in f.name.split(",") if "<" not in n]


def markdown(fields: tuple[Field, ...]) -> str:
    """A Markdown table of ``fields``."""
    lines = ["| name | type | meaning | where |", "| --- | --- | --- | --- |"]
    for f in fields:
        names = ", ".join(f"`{n.strip()}`" for n in f.name.split(","))
        meaning = f.meaning.replace('|', '\\|')
        lines.append(f"| {names} | {f.type.replace('|', ' or ')} | {meaning} | {f.applies} |")
    return "\n".join(lines)


NAMING = (
    ("`param_<p>`", "a parameter of the configuration", "every table"),
    ("`<split>_<quantity>`", ("one replicate's value on a split's rows: `test_accuracy`, `train_loss`, "
      "`test_zero_fraction`"), "per seed"),
    ("`mean_<split>_<quantity>`, `std_<split>_<quantity>`", "over the replicates (sample std, ddof = 1)",
     "summary, curves"),
    ("`ci95_low_<split>_<quantity>`, `ci95_high_<split>_<quantity>`", "95% Student-t interval of that mean",
     "summary"),
    ("`rank_<split>_<quantity>`", "1 = best mean on that split", "summary"),
    ("`replicate<k>_<split>_<quantity>`", ("the replicate at place k of the seed order (scikit-learn's "
      "`split<k>_test_score`)"), "summary"),
    ("`mean_test_diff`, `std_test_diff`, `ci95_*_test_diff`", ("the paired difference from the baseline on the test "
      "rows, replicate by replicate"), "statistics"),
    ("`seed`, `replicate`", "a replicate's seed, and its place k in the seed order", "per seed"),
)


def naming() -> str:
    """The naming rule shared by every table, as a Markdown table."""
    lines = ["| name | what it holds | tables |", "| --- | --- | --- |"]
    lines += [f"| {n} | {m} | {t} |" for n, m, t in NAMING]
    return "\n".join(lines)


def document() -> str:
    """``docs/columns.md``: every table and attribute, from the declarations above."""
    head = ("# Stored attributes and exported columns\n\n"
            "Generated from `search/store/schema.py` by `schema.document()`; `tests/test_schema.py` keeps the\n"
            "two equal. In a name, `<split>` is `train`, `test` or `validation` (only with\n"
            "`[data] validation`), `<metric>` one of the study's metrics (the objective, `<objective>`, first:\n"
            "`accuracy` by default, `r2` or `mae` in a regression study), `<k>` a seed's place in the seed order\n"
            "and `<p>` a parameter of the space. Losses include the activity penalty, as Keras reports them.\n")
    parts = [head, "## One naming rule\n\n`<split>` is `train`, `test` or `validation`; `<quantity>` a metric, "
             "`loss`, `activation` or `zero_fraction` (the regularized layers' sparsity, measured on the test inputs). "
             "The same name means the same thing in every file.\n\n" + naming() + "\n"]
    for title, fields in TABLES.items():
        parts.append(f"## {title}\n\n{markdown(fields)}\n")
    return "\n".join(parts)
