"""The contract with Optuna's storage that the shared queue relies on, on SQLite and PostgreSQL.

:mod:`search.store.claims` builds claims, heartbeats and retries on a few behaviours of
Optuna's ``RDBStorage`` that its documentation does not promise to users. Each test here
pins one, through the storage that :func:`search.store.storage.open_storage` opens, and
says in its message what breaks if an Optuna release changes it.
"""

from __future__ import annotations

import time
import uuid

import optuna
import pytest

from search.store.storage import open_storage

GRACE = 2  # seconds: heartbeats every second, stale after two
# Heartbeats are "experimental" in Optuna: the reason for these tests.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    return request.getfixturevalue("fresh_postgres")


def _runners(url: str, n: int = 2) -> list:
    """``n`` storages on one database, as ``n`` runner processes would open it."""
    return [open_storage(url, create=True, grace=GRACE) for _ in range(n)]


def _study(storage) -> optuna.Study:
    study = optuna.create_study(study_name=f"contract-{uuid.uuid4().hex[:8]}", storage=storage)
    _OPENED[study.study_name] = storage
    return study


def _waiting(study: optuna.Study, **user_attrs) -> int:
    """A WAITING trial with one parameter, as the grid queues it; returns its storage id."""
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params={"x": 1.0},
        distributions={"x": optuna.distributions.FloatDistribution(0, 2)}, user_attrs=user_attrs))
    frozen = study.get_trials(deepcopy=False)[-1]
    storage = _storage_of(study)
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name),
                                                           frozen.number)


_OPENED: dict[str, object] = {}


def _storage_of(study: optuna.Study):
    return _OPENED[study.study_name]


def _broken(what: str) -> str:
    return f"Optuna {optuna.__version__}: {what} (search/store/claims.py relies on it)"


def test_only_one_runner_turns_a_waiting_trial_running(url):
    first, second = _runners(url)
    study = _study(first)
    trial_id = _waiting(study)
    assert first.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING), \
        _broken("claiming a WAITING trial no longer returns True")
    assert not second.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING), \
        _broken("a second runner could claim a RUNNING trial: two runners would fit one configuration")


def test_a_finished_trial_refuses_every_write(url):
    first, second = _runners(url)
    study = _study(first)
    trial_id = _waiting(study)
    first.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING)
    second.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)  # failed as stale elsewhere
    for write in (lambda: first.set_trial_user_attr(trial_id, "k", 1),
                  lambda: first.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING)):
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            write()
    with pytest.raises((optuna.exceptions.UpdateFinishedTrialError, ValueError)):
        study.tell(optuna.trial.Trial(study, trial_id), 0.5)
    assert first.get_trial(trial_id).state.is_finished(), _broken("a lost claim is no longer told by its state")


def test_the_study_reads_unfinished_trials_afresh(url):
    mine, other = _runners(url)
    study = _study(mine)
    trial_id = _waiting(study)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [optuna.trial.TrialState.WAITING]
    other.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [optuna.trial.TrialState.RUNNING], \
        _broken("the study's cache keeps a stale state of an unfinished trial: claims would see old states")
    theirs = optuna.load_study(study_name=study.study_name, storage=other)
    _OPENED[study.study_name] = other
    _waiting(theirs)
    _OPENED[study.study_name] = mine
    waiting = mine.get_all_trials(mine.get_study_id_from_name(study.study_name), deepcopy=False,
                                  states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1, _broken("get_all_trials misses a trial that another runner queued")


def test_a_new_trial_can_be_created_waiting(url):
    (storage,) = _runners(url, 1)
    study = _study(storage)
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.create_new_trial(study_id,
                                        template_trial=optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING))
    assert storage.get_trial(trial_id).state == optuna.trial.TrialState.WAITING, \
        _broken("create_new_trial ignores a WAITING template: a TPE claim would start RUNNING unclaimed")
    assert storage.get_trial_id_from_study_id_trial_number(study_id, 0) == trial_id


def test_a_stale_heartbeat_fails_the_trial_and_queues_it_again_with_its_attributes(url):
    first, second = _runners(url)
    assert first.get_heartbeat_interval() == 1 and first.get_heartbeat_stale_trial_callback() is not None, \
        _broken("heartbeat settings of RDBStorage are not read back")
    study = _study(first)
    trial_id = _waiting(study, config_key='{"x": 1.0}')
    first.record_heartbeat(trial_id)
    first.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING)
    time.sleep(GRACE + 1.5)  # the runner died: no beat since
    theirs = optuna.load_study(study_name=study.study_name, storage=second)
    optuna.storages.fail_stale_trials(theirs)
    trials = theirs.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING], \
        _broken("fail_stale_trials no longer fails a stale trial and queues its retry")
    retry = trials[1]
    assert retry.params == {"x": 1.0} and retry.user_attrs.get("config_key") == '{"x": 1.0}', \
        _broken("the retry of a stale trial lost its parameters or user attributes: the queue cannot key it")


def test_a_beating_trial_is_never_failed_as_stale(url):
    first, second = _runners(url)
    study = _study(first)
    trial_id = _waiting(study)
    first.record_heartbeat(trial_id)
    first.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING)
    for _ in range(3):
        time.sleep(1)
        first.record_heartbeat(trial_id)
    optuna.storages.fail_stale_trials(optuna.load_study(study_name=study.study_name, storage=second))
    assert first.get_trial(trial_id).state == optuna.trial.TrialState.RUNNING, \
        _broken("a trial whose heartbeat is fresh was failed")


def test_two_runners_creating_one_study_see_one_duplicate_error(url):
    first, second = _runners(url)
    name = f"contract-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=first)
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        optuna.create_study(study_name=name, storage=second)


@pytest.mark.parametrize("module", ["optuna.storages._cached_storage", "optuna.storages._heartbeat"])
def test_every_storage_call_of_optunas_cache_and_heartbeats_rides_through_an_outage(module):
    """Optuna's trial cache and heartbeat code call their storage's methods, private ones among
    them; each must be one that :class:`search.store.outage.RetryingStorage` retries, else a lost
    connection in it ends the run with SQLAlchemy's error instead of waiting it out."""
    import importlib
    import inspect
    import re

    from search.store.outage import _CALLS

    source = inspect.getsource(importlib.import_module(module))
    called = set(re.findall(r"(?:self\._backend|storage)\.(_?[a-z][a-z_]*)\(", source))
    plain = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "is_heartbeat_enabled",
             "check_trial_is_updatable", "remove_session", "get_n_trials", "get_trial_number_from_id",
             "get_trial_params"}  # no I/O of their own, or made of retried calls
    missing = sorted(called - set(_CALLS) - plain)
    assert not missing, (f"{module} calls {missing} on its storage, which RetryingStorage does not retry: "
                         "add them to search.store.outage._CALLS")


# Every private name of Optuna or optuna-dashboard that search/ uses, and where: an Optuna or
# optuna-dashboard release that drops or changes one fails the tests below by name.
PRIVATE_USES = {
    "optuna.trial.FrozenTrial._trial_id": "search/store/trials.py (joined_trial: a race's blocks as one trial)",
    "optuna_dashboard._note.get_note_from_system_attrs": "search/store/dashboard.py (save_notes)",
    "optuna_dashboard._note.note_ver_key": "search/store/dashboard.py (save_notes)",
    "optuna_dashboard._note.note_str_key_prefix": "search/store/dashboard.py (save_notes)",
    "optuna_dashboard._note.split_body": "search/store/dashboard.py (save_notes)",
}


def test_search_uses_no_private_name_of_optuna_but_those_pinned_here():
    """Outside search/store/ nothing touches Optuna's or optuna-dashboard's private names; inside, only
    the pinned ones."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "search"
    pinned = {name.rsplit(".", 1)[1] for name in PRIVATE_USES}
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                    "optuna", "optuna_dashboard"):
                name = next((a.name for a in node.names if a.name.startswith("_")), None)
                name = name or next((p for p in node.module.split(".") if p.startswith("_")), None)
            elif isinstance(node, ast.Attribute) and node.attr in pinned | {"_trial_id", "_note"}:
                name = node.attr
            if name is None:
                continue
            where = path.relative_to(root.parent).as_posix()
            if not where.startswith("search/store/") or (name not in pinned and name != "_note"):
                found.append(f"{where}:{node.lineno}: {name}")
    assert found == [], "private names of Optuna used outside the pinned list: " + ", ".join(found)


@pytest.mark.parametrize("name", sorted(PRIVATE_USES))
def test_each_pinned_private_name_exists(name):
    import importlib

    module_name, attr = name.rsplit(".", 1)
    if module_name == "optuna.trial.FrozenTrial":
        trial = optuna.trial.create_trial(value=1.0)
        assert hasattr(trial, attr), _broken(f"FrozenTrial has no {attr}, which {PRIVATE_USES[name]} uses")
        return
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr, None)), (
        f"optuna-dashboard: {module_name}.{attr} is gone, which {PRIVATE_USES[name]} uses")


def test_a_joined_trial_keeps_the_first_blocks_storage_id(tmp_path):
    from search.store.trials import joined_trial

    storage = open_storage(f"sqlite:///{tmp_path / 'ids.db'}", create=True)
    study = _study(storage)
    for x in (0.5, 1.5):
        study.enqueue_trial({"x": x})
        study.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=1)
    first, last = study.get_trials()
    joined = joined_trial(first, last, 2.0, {"a": 1}, {"b": 2}, {0: 1.0})
    study_id = storage.get_study_id_from_name(study.study_name)
    assert joined._trial_id == storage.get_trial_id_from_study_id_trial_number(study_id, first.number), \
        _broken("FrozenTrial(trial_id=...) no longer keeps the id as _trial_id")
    assert (joined.number, joined.value, joined.datetime_complete) == (first.number, 2.0, last.datetime_complete)


def test_notes_written_by_save_notes_read_as_optuna_dashboards_own(tmp_path):
    """A note that search.store.dashboard.save_notes writes is the note optuna-dashboard's own save_note
    would write: its reader sees the body, a longer note replaced by a shorter one leaves no tail, and
    the public save_note, writing after it, takes the next version."""
    from optuna_dashboard import _note, save_note

    from search.store.dashboard import save_notes

    storage = open_storage(f"sqlite:///{tmp_path / 'notes.db'}", create=True)
    study = _study(storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=1)
    study_id = storage.get_study_id_from_name(study.study_name)
    long, short = "# long\n\n" + "x" * 5000, "# short"
    assert save_notes(storage, study_id, long, {0: "trial zero"}) == 2
    assert save_notes(storage, study_id, short, {0: "trial zero"}) == 1  # the unchanged trial note is not written
    attrs = storage.get_study_system_attrs(study_id)
    assert _note.get_note_from_system_attrs(attrs, None)["body"] == short, "optuna-dashboard reads another body"
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, 0)
    assert _note.get_note_from_system_attrs(attrs, trial_id)["body"] == "trial zero"
    version = _note.get_note_from_system_attrs(attrs, None)["version"]
    save_note(study, "# by the dashboard's own writer")
    after = _note.get_note_from_system_attrs(storage.get_study_system_attrs(study_id), None)
    assert after == {"version": version + 1, "body": "# by the dashboard's own writer"}
