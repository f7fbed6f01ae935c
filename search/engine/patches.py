"""The one place where actreg touches private parts of TensorFlow and Keras.

Two hooks, each with a fallback that keeps the numbers right and says what it costs (and one
switch of TensorFlow's that the numbers depend on):

* ``pfor``: TensorFlow's registry of ``vectorized_map`` rules
  (``tensorflow.python.ops.parallel_for.pfor._pfor_converter_registry``), into which
  :mod:`search.engine.vectorize` installs its rules; each rule reads its op through pfor's
  ``_PforInput`` (the methods of :data:`PFOR_INPUT`, checked here too). Without it, chunks of several seeds of
  a convolutional model loop over their seeds and are not compiled with XLA: slower, the
  same numbers within rounding.
* ``seed``: Keras's reference to Python's ``random`` module
  (``keras.src.random.seed_generator.python_random``), which a model's build swaps for a
  generator of its own thread (:func:`thread_seeded`). Without it, Keras draws the seeds of
  its initializers from the global generator, as Keras intends: the same weights, except
  where other threads of the process use that generator while a model is built (a Dask
  worker's event loop can).
* ``onednn``: not a hook but a switch, TensorFlow's oneDNN CPU kernels
  (``TF_ENABLE_ONEDNN_OPTS``), which :mod:`search` turns off before TensorFlow is imported:
  their rounding depends on the number of threads that split an operation, and so on
  ``n_jobs``. Without them, a chunk of a convolutional model that is not compiled with XLA
  loops over its seeds in its convolutions (TensorFlow's plain kernels take no grouped
  convolution's gradient). Turned on by the user, a line says that the numbers then depend
  on the threads.

:func:`check` tells which hooks are missing, one line each, and :func:`warn_missing` prints
those lines once per process; the work unit calls it when a process starts to train
(:mod:`search.engine.parallel`), so a TensorFlow or Keras release that moves a hook is said
at once, not seen as a slowdown. ``tests/test_patches.py`` checks every hook on the
installed versions.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

FALLBACKS = {
    "pfor": "TensorFlow's vectorized_map registry (pfor._pfor_converter_registry) is not where actreg looks: "
            "chunks of convolutional models loop over their seeds and are not compiled with XLA (slower)",
    "seed": "Keras's seed_generator.python_random is not where actreg looks: initial weights are drawn from the "
            "global random generator (other threads of a Dask worker may change them)",
    "onednn": "TensorFlow's oneDNN CPU kernels are on (TF_ENABLE_ONEDNN_OPTS=1, or TensorFlow was imported before "
              "actreg on a CPU with AVX-512): their rounding depends on the threads per operation, so the numbers "
              "may change with n_jobs",
}
_WARNED: list[bool] = []


# What the rules of search/engine/vectorize.py read of the op they convert: pfor's private
# ``_PforInput``, handed to every rule by the registry.
PFOR_INPUT = ("input", "stacked_input", "unstacked_input", "stack_inputs", "get_attr", "op")


def pfor() -> Any | None:
    """TensorFlow's pfor module where it has the registry, ``wrap`` and the ``_PforInput`` that the rules
    need, else None."""
    try:
        from tensorflow.python.ops.parallel_for import pfor as module
    except ImportError:
        return None
    given = getattr(module, "_PforInput", None)
    ok = (isinstance(getattr(module, "_pfor_converter_registry", None), dict) and hasattr(module, "wrap")
          and given is not None and all(hasattr(given, name) for name in PFOR_INPUT))
    return module if ok else None


def install_rules(replaced: Mapping[str, Callable], added: Mapping[str, Callable]) -> bool:
    """Put ``replaced[op](wrap, previous_rule, pfor_input)`` in place of pfor's rule for each op,
    and ``added[op](wrap, pfor_input)`` where pfor has none. False, and nothing changed, where
    the registry is missing or lacks a rule to replace."""
    module = pfor()
    registry = module._pfor_converter_registry if module is not None else {}
    if module is None or not set(replaced) <= set(registry):
        return False
    import functools

    for name, rule in replaced.items():
        registry[name] = functools.partial(rule, module.wrap, registry[name])
    for name, rule in added.items():
        registry.setdefault(name, functools.partial(rule, module.wrap))
    return True


def _seed_generator() -> Any | None:
    try:
        from keras.src.random import seed_generator
    except ImportError:
        return None
    return seed_generator if isinstance(getattr(seed_generator, "python_random", None), type(random)) else None


@contextlib.contextmanager
def thread_seeded(seed: int) -> Iterator[None]:
    """``keras.utils.set_random_seed(seed)``, with the seeds of Keras's initializers drawn for this thread alone.

    A Keras layer without a seed draws one from Python's global ``random`` generator. In a
    process whose other threads use that generator too (a Dask worker's event loop does),
    the weights would depend on their timing. Within this, Keras draws from a private
    ``random.Random(seed)``: the same numbers the freshly seeded global generator gives, so
    the weights stay those of the tutorial's own code.
    """
    import keras

    keras.utils.set_random_seed(seed)
    module = _seed_generator()
    if module is None:  # the fallback: the global generator, as Keras intends
        yield
        return
    shared = module.python_random
    module.python_random = random.Random(seed)
    try:
        yield
    finally:
        module.python_random = shared


def onednn() -> bool:
    """Whether TensorFlow runs its oneDNN CPU kernels (which take grouped convolutions' gradients).

    Asked of TensorFlow's own build and run-time switch; where it cannot tell, the environment's.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "0").lower() in ("1", "true")


def check() -> list[str]:
    """One line for each hook that is missing from the installed TensorFlow or Keras, and for oneDNN
    turned on (none: all as actreg sets them)."""
    missing = {"pfor": pfor() is None, "seed": _seed_generator() is None, "onednn": onednn()}
    return [FALLBACKS[name] for name, gone in missing.items() if gone]


def warn_missing(stream: TextIO | None = None) -> list[str]:
    """Print :func:`check`'s lines once per process (to stderr), each beginning with ``actreg:``."""
    if _WARNED:
        return []
    _WARNED.append(True)
    lines = check()
    for line in lines:
        print(f"actreg: {line}", file=stream or sys.stderr, flush=True)
    return lines
