from __future__ import annotations

import copy

from search.store.storage import fingerprint_diff, spec_fingerprint
from search.study.parse import parse_spec
from tests.test_spec import BASE


def test_settings_added_later_do_not_invalidate_stored_studies():
    current = spec_fingerprint(parse_spec(BASE))
    # A fingerprint stored before layer options, data splits, builders and metrics existed.
    old = copy.deepcopy(current)
    for layer in old["model"]["layers"]:
        for key in ("filters", "kernel_size", "strides", "padding", "pool_size", "rate", "return_sequences"):
            del layer[key]
    for key in ("test_size", "split_seed", "stratify", "standardize", "view", "steps", "path", "target", "features"):
        del old["data"][key]
    del old["model"]["builder"], old["metric"]
    assert fingerprint_diff(old, current) == []
    changed = spec_fingerprint(parse_spec({**BASE, "metric": "accuracy", "train": {"epochs": 6}}))
    assert fingerprint_diff(old, changed) == ["train.epochs"]
    # Resampling and validation rows, at their defaults, are not even written: a study file of before
    # gets the very fingerprint it got then.
    assert not {"resample", "validation"} & set(current["data"]) and "rope" not in current


def test_resampling_and_validation_are_part_of_the_study_and_the_rope_is_not():
    current = spec_fingerprint(parse_spec(BASE))
    resampled = spec_fingerprint(parse_spec({**BASE, "data": {**BASE["data"], "resample": "draw"}}))
    assert fingerprint_diff(current, resampled) == ["data.random_state", "data.resample"]
    held = spec_fingerprint(parse_spec({**BASE, "data": {**BASE["data"], "validation": 0.2}}))
    assert fingerprint_diff(current, held) == ["data.stratify", "data.validation"]
    assert fingerprint_diff(current, spec_fingerprint(parse_spec({**BASE, "rope": 0.05}))) == []


def test_a_races_rope_and_alpha_are_part_of_it():
    """A race's rope decides which fits are made (a configuration stops at its verdict): a runner with
    another rope, or another alpha, would join a race that is not the one its file describes."""
    race = {**BASE, "seeds": 60, "race": {"min_replicates": 30}}
    current = spec_fingerprint(parse_spec(race))
    assert fingerprint_diff(current, spec_fingerprint(parse_spec({**race, "rope": 0.3}))) == ["rope"]
    other = spec_fingerprint(parse_spec({**race, "race": {"min_replicates": 30, "alpha": 0.1}}))
    assert fingerprint_diff(current, other) == ["race.alpha"]


def test_a_users_data_file_counts_by_content(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n")
    doc = {**BASE, "data": {"source": "csv", "path": "d.csv", "target": "y", "n_train": 2}}
    first = spec_fingerprint(parse_spec(doc, source=str(tmp_path / "s.toml")))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "d.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n")
    assert fingerprint_diff(first, spec_fingerprint(parse_spec(doc, source=str(moved / "s.toml")))) == []
    (moved / "d.csv").write_text("a,y\n1,0\n2,1\n3,0\n5,1\n")
    assert fingerprint_diff(first, spec_fingerprint(parse_spec(doc, source=str(moved / "s.toml")))) == ["data.path"]


def test_a_relative_path_that_makes_folders_says_where_the_file_went(tmp_path, monkeypatch, capsys):
    from search.store.storage import open_storage

    monkeypatch.chdir(tmp_path)
    open_storage("sqlite:///no/such/dir/x.db", create=True, access="run")
    assert (tmp_path / "no/such/dir/x.db").exists()
    err = capsys.readouterr().err
    assert err == (f"note: sqlite:///no/such/dir/x.db: a relative path: made the folder {tmp_path}/no/such/dir "
                   f"for the new database {tmp_path}/no/such/dir/x.db (sqlite://// with four slashes is an "
                   "absolute path)\n")
    open_storage("sqlite:///no/such/dir/x.db", create=True, access="run")  # the folder is there now: no note
    open_storage(f"sqlite:///{tmp_path}/abs/y.db", create=True, access="run")  # an absolute path: no note
    assert capsys.readouterr().err == ""


def test_a_storage_failure_is_told_by_its_type_not_its_name():
    import optuna
    import sqlalchemy.exc

    from search.store.errors import storage_failure

    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    assert storage_failure(lost) is lost
    try:
        raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from lost
    except optuna.exceptions.StorageInternalError as wrapped:
        assert storage_failure(wrapped) is lost  # the cause is what the line describes
    assert storage_failure(ValueError("a bug")) is None
    assert storage_failure(type("StorageInternalError", (Exception,), {})()) is None  # a namesake is not it
