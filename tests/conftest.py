from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# A small study that is not in the repository: moons, two hidden layers, its own grid.
SMALL_STUDY = """
name = "{name}"
seeds = {seeds}
penalty = "{penalty}"
{extra}
[data]
source = "moons"
n_samples = 60
noise = 0.2
random_state = 3
n_train = 24

[model]
layers = [
  {{ type = "dense", units = 16, activation = "tanh", regularize = true }},
  {{ type = "dense", units = 8, activation = "relu", regularize = true }},
  {{ type = "dense", units = 1, activation = "sigmoid" }},
]

[train]
epochs = {epochs}
batch_size = 8
learning_rate = 0.01

[space]
norm = ["none", "l1", "l2"]
strength = [1e-3, 1e-1]
placement = ["pre", "post"]
"""


def write_study(folder: Path, name: str = "small", seeds: int = 3, epochs: int = 6, penalty: str = "mean",
                extra: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(SMALL_STUDY.format(name=name, seeds=seeds, epochs=epochs, penalty=penalty,
                                                       extra=extra)))
    return path


@pytest.fixture
def small_study(tmp_path: Path) -> Path:
    return write_study(tmp_path)
