"""The private TensorFlow and Keras hooks: in place on the installed versions, and a missing one is said in one line."""

from __future__ import annotations

import io
import random

from search.engine import runtime

runtime.import_tensorflow()

from search.engine import patches  # noqa: E402


def test_every_hook_is_in_place_on_the_installed_versions():
    # A TensorFlow or Keras upgrade that moves a hook fails here, by name, before a study slows down.
    assert patches.check() == []
    assert patches.pfor() is not None


def test_a_missing_hook_is_one_line_once_per_process(monkeypatch):
    monkeypatch.setattr(patches, "pfor", lambda: None)
    monkeypatch.setattr(patches, "_WARNED", [])
    out = io.StringIO()
    assert patches.warn_missing(out) == [patches.FALLBACKS["pfor"]]
    assert out.getvalue() == f"actreg: {patches.FALLBACKS['pfor']}\n"
    assert patches.warn_missing(out) == [] and out.getvalue().count("\n") == 1
    assert not patches.install_rules({"MatMul": lambda *a: None}, {})  # the fallback changes nothing


def test_thread_seeded_draws_what_the_seeded_global_generator_draws():
    import keras

    with patches.thread_seeded(7):
        inside = [keras.src.random.seed_generator.python_random.randint(1, 10**9) for _ in range(3)]
    random.seed(7)
    assert inside == [random.randint(1, 10**9) for _ in range(3)]
    assert keras.src.random.seed_generator.python_random is random  # restored


def test_the_seed_fallback_still_seeds(monkeypatch):
    monkeypatch.setattr(patches, "_seed_generator", lambda: None)
    assert patches.check() == [patches.FALLBACKS["seed"]]
    with patches.thread_seeded(3):
        first = random.random()
    with patches.thread_seeded(3):
        assert random.random() == first


def test_onednn_is_off_and_turned_on_a_line_says_what_it_costs():
    """actreg turns TensorFlow's oneDNN kernels off (TensorFlow turns them on on CPUs with AVX-512):
    their rounding depends on the threads per operation. Turned on by the user, the rules stay
    in place and one line says that the numbers then depend on the threads."""
    import os
    import subprocess
    import sys

    assert not patches.onednn()
    code = ("from search.engine import runtime, vectorize, patches; runtime.import_tensorflow(); "
            "print(patches.onednn(), vectorize.install(), patches.check())")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"True True {[patches.FALLBACKS['onednn']]}"
