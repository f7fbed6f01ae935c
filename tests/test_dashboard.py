"""`actreg dashboard` serves the study over HTTP and stops cleanly."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from conftest import write_study

from search import load_spec, run_study


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_serves_the_study_and_stops_cleanly(tmp_path):
    path = write_study(tmp_path, name="dash", seeds=2, epochs=4)
    run_study(load_spec(path).with_overrides(n_jobs=1), progress=False)
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
        with urllib.request.urlopen(f"{base}/dashboard/studies/{study['study_id']}", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in out
    assert "dashboard stopped" in out
