"""Process set-up: workers share the cores, -1 means all, versions are read without importing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from search.engine import runtime


@pytest.mark.parametrize("n_jobs, cores, threads", [(1, 8, 8), (2, 8, 4), (3, 8, 2), (16, 8, 1), (0, 4, 4)])
def test_workers_share_the_cores(n_jobs, cores, threads):
    assert runtime.threads_per_worker(n_jobs, cores) == threads


def test_all_cores_is_none_or_minus_one():
    assert runtime.resolve_n_jobs(None) == runtime.resolve_n_jobs(-1) == (os.cpu_count() or 1)
    assert runtime.resolve_n_jobs(3) == 3


def test_versions_name_the_libraries_that_make_the_numbers_without_importing_them():
    code = ("import sys; from search.engine import runtime; v = runtime.versions(); "
            "print(sorted(v)); print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert {"keras", "tensorflow", "numpy", "optuna", "python", "scikit-learn"} <= set(eval(out[0]))
    assert out[1] == "False False"
