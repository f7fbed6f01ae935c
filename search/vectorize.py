"""Two ops that ``tf.vectorized_map`` ran as a loop over the seeds, vectorized.

``vectorized_map`` (pfor) turns each op of one seed's step into one op over all seeds, by
a rule per op type; an op without a rule for its case becomes a loop, one small op per seed.
:func:`install` adds two rules:

* ``Conv2D`` with one kernel per seed (pfor's rule only takes a shared kernel): the seeds'
  channels side by side and one convolution with ``groups = seeds``, which TensorFlow's
  CPU kernels (oneDNN), and its gradient, run in one call.
* ``Bitcast`` (no rule at all): Keras's ``argmax`` bitcasts to tell -0.0 from 0.0, so every
  multiclass accuracy looped over the seeds, in every training step and evaluation.

pfor's registry of rules is private (``parallel_for.pfor._pfor_converter_registry``); if
a TensorFlow release changes it, :func:`install` leaves it alone and the loop remains:
slower, with the same numbers up to rounding. One seed alone never goes through
``vectorized_map``, so ``model.fit``'s bit-exactness does not depend on this.
"""

from __future__ import annotations

_INSTALLED: list[bool] = []


def install() -> bool:
    """Add the two rules to ``vectorized_map`` (once per process); True if they are in place."""
    if _INSTALLED:
        return _INSTALLED[0]
    try:
        import tensorflow as tf
        from tensorflow.python.ops.parallel_for import pfor
    except ImportError:
        _INSTALLED.append(False)
        return False
    registry = getattr(pfor, "_pfor_converter_registry", None)
    shared_kernel_rule = registry.get("Conv2D") if isinstance(registry, dict) else None
    if shared_kernel_rule is None or not hasattr(pfor, "wrap"):
        _INSTALLED.append(False)
        return False

    def conv2d(pfor_input):
        if not pfor_input.input(1)[1] or pfor_input.get_attr("data_format") != b"NHWC" \
                or pfor_input.get_attr("padding") not in (b"VALID", b"SAME"):
            return shared_kernel_rule(pfor_input)  # pfor's own rule: a shared kernel, or its loop
        pfor_input.stack_inputs([0])
        return [pfor.wrap(grouped_conv2d(pfor_input.stacked_input(0), pfor_input.stacked_input(1),
                                         pfor_input.get_attr("strides"), pfor_input.get_attr("padding").decode(),
                                         pfor_input.get_attr("dilations")), True)]

    def bitcast(pfor_input):  # elementwise (a trailing axis at most changes): the seed axis stays in front
        return [pfor.wrap(tf.bitcast(pfor_input.stacked_input(0), pfor_input.get_attr("type")), True)]

    registry["Conv2D"] = conv2d
    registry.setdefault("Bitcast", bitcast)
    _INSTALLED.append(True)
    return True


def grouped_conv2d(x, kernels, strides, padding: str, dilations):
    """``conv2d(x[s], kernels[s])`` for every seed s at once: ``x`` is (seeds, batch, height,
    width, channels) and ``kernels`` (seeds, kh, kw, channels, filters), NHWC."""
    import tensorflow as tf

    n, batch = tf.shape(x)[0], tf.shape(x)[1]
    height, width, channels = tf.shape(x)[2], tf.shape(x)[3], tf.shape(x)[4]
    kh, kw, filters = tf.shape(kernels)[1], tf.shape(kernels)[2], tf.shape(kernels)[4]
    # Seed s's channels become input channels s*C .. s*C+C-1; its filters, outputs s*F .. s*F+F-1.
    x_ = tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]), tf.stack([batch, height, width, n * channels]))
    k_ = tf.reshape(tf.transpose(kernels, [1, 2, 3, 0, 4]), tf.stack([kh, kw, channels, n * filters]))
    y = tf.nn.conv2d(x_, k_, strides, padding, dilations=dilations)
    shape = tf.shape(y)
    y = tf.reshape(y, tf.stack([shape[0], shape[1], shape[2], n, filters]))
    return tf.transpose(y, [3, 0, 1, 2, 4])
