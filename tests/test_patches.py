"""The private TensorFlow and Keras hooks: in place on the installed versions, and a missing one is said in one line."""

from __future__ import annotations

import io
import random

from search.engine import runtime

runtime.import_tensorflow()

from search.engine import patches  # noqa: E402


def test_both_hooks_are_in_place_on_the_installed_versions():
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
