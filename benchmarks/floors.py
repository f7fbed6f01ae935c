"""How far each example study's trainer is from the machine's arithmetic floor.

For each study file: the multiply-adds of one model-epoch counted from its layers (a forward
and backward pass, about 3x a forward pass, over the training rows, and a forward pass over
the test rows, which actreg evaluates every epoch; elementwise work not counted), the
machine's float32 GFLOP/s measured with a large matrix product on all cores, the floor
(FLOPs / GFLOP/s) and, with ``--bench``, actreg's measured cost from ``actreg bench --study``.

    python benchmarks/floors.py --bench studies/seed-tutorial.toml studies/digits-cnn.toml \\
        studies/digits-lstm.toml studies/regression.toml

Builder models (``builder = "module:function"``) are skipped: their layers are not known
without building them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def forward_flops(layers, input_shape: tuple[int, ...]) -> int:
    """FLOPs (2 per multiply-add) of one sample's forward pass through ``layers`` (LayerSpecs)."""
    from search.study.layers import LAYERS

    shape, total = tuple(input_shape), 0
    for layer in layers:
        out = LAYERS[layer.type].shape(layer, shape)
        if layer.type == "dense":
            total += 2 * shape[-1] * layer.units * (_prod(shape[:-1]) or 1)
        elif layer.type == "conv2d":
            total += 2 * layer.kernel_size[0] * layer.kernel_size[1] * shape[2] * layer.filters * out[0] * out[1]
        elif layer.type in ("lstm", "gru"):
            gates = 4 if layer.type == "lstm" else 3
            total += 2 * gates * layer.units * (shape[1] + layer.units) * shape[0]
        shape = out
    return total


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n if dims else 0


def model_epoch_flops(spec) -> tuple[int, int, int]:
    """(FLOPs per model-epoch, training rows, test rows) of a study."""
    from search.engine.checks import check_study

    data = check_study(spec)
    per_sample = forward_flops(spec.model.layers, data.x_train.shape[1:])
    return 3 * per_sample * len(data.x_train) + per_sample * len(data.x_test), len(data.x_train), len(data.x_test)


def machine_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Float32 GFLOP/s of a ``size`` x ``size`` matrix product on all cores, best of ``repeats``."""
    from search.engine import runtime

    runtime.configure(os.cpu_count() or 1)
    import tensorflow as tf

    a = tf.random.stateless_normal([size, size], seed=[0, 1])
    b = tf.random.stateless_normal([size, size], seed=[0, 2])
    product = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
    product(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", metavar="STUDY.toml")
    parser.add_argument("--bench", action="store_true", help="also run actreg bench --study on each")
    args = parser.parse_args(argv)
    from search.study.parse import load_spec

    gflops = machine_gflops()
    print(f"machine: {gflops:.1f} GFLOP/s (float32 1024x1024 matrix product, {os.cpu_count()} cores)")
    print("| study | rows train / test | MFLOP per model-epoch | floor µs | actreg µs | actreg / floor |")
    print("|---|---|---:|---:|---:|---:|")
    for path in args.studies:
        spec = load_spec(path)
        if spec.model.builder is not None:
            print(f"| {spec.name} | builder model: skipped | | | | |")
            continue
        flops, n_train, n_test = model_epoch_flops(spec)
        floor_us = flops / (gflops * 1e9) * 1e6
        measured = _bench(path) if args.bench else None
        cells = (f"{measured:,.1f}", f"{measured / floor_us:,.0f}x") if measured else ("", "")
        print(f"| {spec.name} | {n_train} / {n_test} | {flops / 1e6:,.2f} | {floor_us:,.1f} | "
              f"{cells[0]} | {cells[1]} |")
    return 0


def _bench(path: str) -> float:
    proc = subprocess.run([sys.executable, "-m", "search", "bench", "--study", path, "--fit-epochs", "1", "--json"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: actreg bench --study {path} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["actreg_us_per_model_epoch"]


if __name__ == "__main__":
    raise SystemExit(main())
