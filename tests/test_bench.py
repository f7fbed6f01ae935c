from __future__ import annotations

import json
import subprocess
import sys

KEYS = {"keras_fit_us_per_model_epoch", "actreg_us_per_model_epoch", "speedup", "seeds", "epochs", "cores"}


def test_bench_json_has_the_documented_keys_and_consistent_numbers():
    proc = subprocess.run([sys.executable, "-m", "search", "bench", "--epochs", "5", "--seeds", "3",
                           "--fit-epochs", "1", "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert (result["seeds"], result["epochs"], result["keras_fit_epochs"]) == (3, 5, 1)
    assert result["keras_fit_us_per_model_epoch"] > 0 and result["actreg_us_per_model_epoch"] > 0
    ratio = result["keras_fit_us_per_model_epoch"] / result["actreg_us_per_model_epoch"]
    assert abs(result["speedup"] - ratio) <= 0.1 + 1e-3 * ratio


def test_bench_rejects_a_non_positive_count():
    proc = subprocess.run([sys.executable, "-m", "search", "bench", "--seeds", "0"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "--seeds" in proc.stderr and "positive" in proc.stderr
