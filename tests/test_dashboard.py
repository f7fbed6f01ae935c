"""`actreg dashboard` serves the study over HTTP and stops cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import free_port, write_study

from search import load_spec, run_study
from search.results.report import write_report

pytestmark = pytest.mark.slow  # real processes, databases or clusters


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_serves_the_study_and_stops_cleanly(tmp_path):
    path = write_study(tmp_path, name="dash", seeds=2, epochs=4)
    spec = load_spec(path).with_overrides(n_jobs=1)
    run_study(spec, progress=False)
    write_report(spec)  # attaches the figures to the study and each trial's curves to the trial
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "search", "dashboard", str(path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = get_json(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "dashboard did not start"
                time.sleep(0.3)
        (study,) = [s for s in studies if s["study_name"] == "dash"]
        detail = get_json(f"{base}/api/studies/{study['study_id']}")
        trials = detail["trials"]
        assert len(trials) == 9
        assert detail["objective_names"] == ["mean test accuracy"]  # not "Objective 0"
        for t in trials:  # each trial ran from its claim to its result: the timeline is real
            assert t["state"] == "Complete" and t["datetime_complete"] > t["datetime_start"]
        attrs = {a["key"]: a["value"] for a in trials[0]["user_attrs"]}
        assert {"test_accuracy", "train_accuracy", "std_test_accuracy", "mean_activation"} <= set(attrs)
        assert attrs["summary"].startswith("test accuracy ") and "95% CI" in attrs["summary"]  # at a glance
        assert [v["step"] for v in trials[0]["intermediate_values"]] == [1, 2, 3, 4]
        assert len(json.loads(attrs["test_accuracy"])) == 2  # one per seed
        # The learning curves are a study artifact, not a user attribute as wide as a page.
        assert "curves" not in attrs and max(len(str(v)) for v in attrs.values()) < 200
        artifacts = {a["filename"]: a["artifact_id"] for a in detail["artifacts"]}
        assert {"curves.csv", "curves.png", "seeds.png"} <= set(artifacts)
        with urllib.request.urlopen(f"{base}/artifacts/{study['study_id']}/{artifacts['curves.csv']}",
                                    timeout=10) as r:
            lines = r.read().decode().splitlines()
        header = lines[0].split(",")
        assert header[3:6] == ["configuration", "trial_number", "epoch"] and "mean_train_accuracy" in header
        assert "mean_test_loss" in header and len(lines) == 1 + 9 * 4  # 9 configurations x 4 epochs
        with urllib.request.urlopen(f"{base}/dashboard/studies/{study['study_id']}", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in out
    assert "dashboard stopped" in out
