from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import benchmark

pytestmark = pytest.mark.slow  # real processes, databases or clusters

KEYS = {"keras_fit_us_per_model_epoch", "actreg_us_per_model_epoch", "speedup", "seeds", "epochs", "cores", "repeats"}


def test_bench_json_has_the_documented_keys_and_consistent_numbers():
    proc = subprocess.run([sys.executable, "-m", "search", "bench", "--epochs", "5", "--seeds", "3", "--fit-epochs",
                           "1", "--repeats", "2", "--record-every", "2", "--json"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert (result["seeds"], result["epochs"], result["keras_fit_epochs"], result["repeats"]) == (3, 5, 1, 2)
    assert result["record_every"] == 2
    assert result["keras_fit_us_per_model_epoch"] > 0 and result["actreg_us_per_model_epoch"] > 0
    ratio = result["keras_fit_us_per_model_epoch"] / result["actreg_us_per_model_epoch"]
    assert abs(result["speedup"] - ratio) <= 0.1 + 1e-3 * ratio


def test_bench_rejects_a_non_positive_count():
    for flag in ("--seeds", "--repeats", "--record-every"):
        proc = subprocess.run([sys.executable, "-m", "search", "bench", flag, "0"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode != 0
        assert flag in proc.stderr and "positive" in proc.stderr


def _benchmarks():
    from pathlib import Path

    peers, floors = benchmark("peers", "floors")
    return Path(__file__).resolve().parents[1] / "benchmarks", peers, floors


def test_the_peers_table_ranks_by_best_round_and_gives_multiples_of_actreg():
    _, peers, _ = _benchmarks()
    rounds = [{"actreg": 40.0, "keras model.fit": 90000.0, "anchor": 30.0},
              {"actreg": 32.0, "keras model.fit": 64000.0, "anchor": 24.0}]
    rows = peers.table(rounds).splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| anchor", "| actreg", "| keras model.fit"]
    assert rows[0].endswith("| 24 | 30, 24 | 0.75 |")
    assert rows[2].endswith("| 64000 | 90000, 64000 | 2e+03 |")


def test_the_keras_on_jax_anchor_trains_the_case_study_or_says_what_is_missing():
    """Every variant trains the same way: recording actreg's outputs too, or the test set's only every
    7th epoch, changes no weight."""
    root, _, _ = _benchmarks()
    results = {}
    for outputs, every in (("accuracy", "1"), ("all", "1"), ("all", "7")):
        proc = subprocess.run([sys.executable, str(root / "keras_jax_anchor.py"), "--epochs", "30", "--seeds", "2",
                               "--repeats", "1", "--outputs", outputs, "--record-every", every], capture_output=True,
                              text=True, timeout=300, check=False)
        try:
            import jax  # noqa: F401
            import optax  # noqa: F401
        except ImportError:
            assert proc.returncode == 3 and "jax and optax" in proc.stderr.splitlines()[-1]
            continue
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[outputs, every] = result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert (result["seeds"], result["epochs"], result["outputs"]) == (2, 30, outputs)
        assert result["record_every"] == int(every)
        assert result["us_per_model_epoch"] > 0 and 0.3 < result["final_test_accuracy_mean"] <= 1.0
    if results:
        assert len({r["final_test_accuracy_mean"] for r in results.values()}) == 1


def test_floors_count_the_multiply_adds_of_each_layer_kind():
    from search.study.spec import LayerSpec as L

    *_, floors = _benchmarks()
    # conv 3x3x1 -> 16 on 8x8 (6x6 outputs), pool to 3x3, dense 144 -> 10: the digits-cnn model.
    cnn = (L("conv2d", filters=16, kernel_size=(3, 3)), L("maxpool2d", pool_size=(2, 2)), L("flatten"),
           L("dense", 10, "softmax"))
    assert floors.forward_flops(cnn, (8, 8, 1)) == 2 * (9 * 16 * 36 + 144 * 10)
    assert floors.forward_flops((L("lstm", 32), L("dense", 10)), (8, 8)) == 2 * (8 * 4 * 32 * (8 + 32) + 32 * 10)
    assert floors.forward_flops((L("gru", 4),), (5, 3)) == 2 * 5 * 3 * 4 * (3 + 4)
    assert floors.forward_flops((L("dense", 500, "relu"), L("dense", 1)), (2,)) == 2 * (2 * 500 + 500)
