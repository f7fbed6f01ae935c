"""Rules that ``tf.vectorized_map`` lacks, so that no op of a chunk loops over its seeds.

``vectorized_map`` (pfor) turns each op of one seed's step into one op over all seeds, by a
rule per op type; an op without a rule for its case becomes a loop, one small op per seed,
and XLA does not compile such a loop at all. :func:`install` adds these rules:

* ``Conv2D`` with one kernel per seed (pfor's rule only takes a shared kernel): one
  convolution with ``groups = seeds`` (the seeds' channels side by side), which TensorFlow's
  CPU kernels run in one call where oneDNN is on (actreg turns it off, see
  :mod:`search.engine.patches`; off, the seeds loop outside XLA); for XLA, each seed's patches
  (strided slices) times its kernel, one batched product, which XLA fuses better.
* ``Conv2DBackpropFilter`` and ``Conv2DBackpropInput`` with per-seed inputs (under XLA each
  seed takes its own gradient inside the map, see :mod:`search.engine.trainer`): patches against
  the output gradient, one batched product; one grouped transposed convolution (outside XLA,
  with oneDNN only).
* ``MaxPoolGrad`` where the windows tile the input, for XLA: each window's gradient to its
  first maximum, as ``MaxPoolGrad`` routes it (XLA's own select-and-scatter cost as much as
  the convolution and its gradients together).
* ``MatMul`` with an inner dimension of at most :data:`SMALL_DIM`, or as few rows and an inner
  dimension of at most :data:`SHORT_SUM`, for XLA (the case-study MLP's two inputs, its one
  output in the backward pass, the two-row kernel gradient over a batch): products and sums,
  which XLA computes inside what consumes them, where a batched matrix product wrote and read
  a (seeds, rows, units) tensor. Longer sums, and products with few columns, stay matrix
  products: written out, XLA split the sums into windows and ran slower.
* ``Bitcast`` (no rule at all): Keras's ``argmax`` bitcasts to tell -0.0 from 0.0, so every
  multiclass accuracy looped over the seeds, in every training step and evaluation.

Each rule hands the cases it does not take (other layouts, explicit padding, shapes unknown
when the graph is traced) to pfor's own rule. pfor's registry of rules is private: :mod:`search.engine.patches`
installs them, and where a TensorFlow release moved it, :func:`install` returns False: the
loops remain, the trainer does not compile convolutions with XLA, and a line says so.
One seed alone never goes through ``vectorized_map``, so
``model.fit``'s bit-exactness does not depend on this.
"""

from __future__ import annotations

import contextlib

from search.engine.patches import install_rules, onednn

# The layers (Keras class names) whose per-seed ops pfor loops over without these rules.
NEEDED_BY = ("Conv2D",)
_REPLACED = ("Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput", "MaxPoolGrad", "MatMul")
# A matrix product with this inner dimension or less, or this many rows or fewer and an inner
# dimension of at most SHORT_SUM (which XLA sums in one loop), is written out for XLA.
SMALL_DIM = 4
SHORT_SUM = 32

_INSTALLED: list[bool] = []
_FOR_XLA: list[bool] = []  # set while a graph that XLA will compile is traced (pfor cannot tell)


def install() -> bool:
    """Add the rules to ``vectorized_map`` (once per process); True if they are in place."""
    if not _INSTALLED:
        rules = (_conv2d, _conv2d_backprop_filter, _conv2d_backprop_input, _max_pool_grad, _matmul)
        _INSTALLED.append(install_rules(dict(zip(_REPLACED, rules)), {"Bitcast": _bitcast}))
    return _INSTALLED[0]


@contextlib.contextmanager
def for_xla():
    """Trace the ``vectorized_map`` calls inside for XLA: the rules that XLA runs faster apply."""
    _FOR_XLA.append(True)
    try:
        yield
    finally:
        _FOR_XLA.pop()


# Each rule: ``wrap`` (pfor's), pfor's own rule for the op (``previous``), and the op's ``pfor_input``:
# pfor's private ``_PforInput``, of which the rules use only the methods that
# search.engine.patches.PFOR_INPUT names and patches.pfor() checks.

def _conv2d(wrap, previous, pfor_input):
    if not pfor_input.input(1)[1] or not _plain(pfor_input):
        return previous(pfor_input)  # a shared kernel (pfor's own rule), or its loop
    if not _FOR_XLA and not onednn():
        return previous(pfor_input)  # TensorFlow's plain CPU kernels take no grouped convolution's gradient
    pfor_input.stack_inputs([0])
    x, kernels = pfor_input.stacked_input(0), pfor_input.stacked_input(1)
    if _FOR_XLA and kernels.shape[1:].is_fully_defined() and x.shape[2:4].is_fully_defined():
        return [wrap(patch_conv2d(x, kernels, *_window_attrs(pfor_input)), True)]
    return [wrap(grouped_conv2d(x, kernels, *_window_attrs(pfor_input)), True)]


def _conv2d_backprop_filter(wrap, previous, pfor_input):
    sizes = _static_shape(pfor_input.op.inputs[1])
    if not (pfor_input.input(0)[1] and pfor_input.input(2)[1]) or sizes is None or not _plain(pfor_input) \
            or not pfor_input.stacked_input(0).shape[2:4].is_fully_defined():
        return previous(pfor_input)  # a shared input (pfor's own rule), or its loop
    return [wrap(kernel_gradients(pfor_input.stacked_input(0), pfor_input.stacked_input(2), sizes,
                                  *_window_attrs(pfor_input)), True)]


def _conv2d_backprop_input(wrap, previous, pfor_input):
    if not (pfor_input.input(1)[1] and pfor_input.input(2)[1]) or not _plain(pfor_input) \
            or (not _FOR_XLA and not onednn()):
        return previous(pfor_input)  # a shared kernel, or a grouped transposed convolution that needs oneDNN
    return [wrap(input_gradients(pfor_input.unstacked_input(0), pfor_input.stacked_input(1),
                                 pfor_input.stacked_input(2), *_window_attrs(pfor_input)), True)]


def _max_pool_grad(wrap, previous, pfor_input):
    window = _tiling_window(pfor_input)
    if window is None or not pfor_input.input(2)[1]:
        return previous(pfor_input)
    pfor_input.stack_inputs([0, 2])
    return [wrap(tiled_max_pool_grad(pfor_input.stacked_input(0), pfor_input.stacked_input(2), window), True)]


def _matmul(wrap, previous, pfor_input):
    a, b = (pfor_input.input(i) for i in (0, 1))
    if not (_FOR_XLA and a[1] and b[1] and a[0].shape.is_fully_defined() and b[0].shape.is_fully_defined()):
        return previous(pfor_input)
    a, b = a[0], b[0]
    if pfor_input.get_attr("transpose_a"):
        a = _transposed(a)
    if pfor_input.get_attr("transpose_b"):
        b = _transposed(b)
    if not small(a.shape[1], a.shape[2]):
        return previous(pfor_input)
    return [wrap(small_matmul(a, b), True)]


def small(m: int, k: int) -> bool:
    """Whether :func:`small_matmul` takes a product of ``m`` rows and inner dimension ``k``."""
    return k <= SMALL_DIM or (m <= SMALL_DIM and k <= SHORT_SUM)


def _transposed(t):
    """``t`` (seeds, m, n) as (seeds, n, m)."""
    import tensorflow as tf

    return tf.transpose(t, [0, 2, 1])


def small_matmul(a, b):
    """``a[s] @ b[s]`` for every seed s, ``a`` (seeds, m, k) and ``b`` (seeds, k, n), as :func:`small`
    says: with k small, a sum of k outer products (elementwise, so XLA computes it inside
    whatever consumes it); with m small, products summed over k (a reduction XLA fuses with
    what produces its operands)."""
    import tensorflow as tf

    k = a.shape[2]
    if k <= SMALL_DIM:
        out = a[:, :, :1] * b[:, :1, :]
        for i in range(1, k):
            out = out + a[:, :, i:i + 1] * b[:, i:i + 1, :]
        return out
    return tf.reduce_sum(a[:, :, :, None] * b[:, None, :, :], axis=2)  # m small: (seeds, m, k, n) over k


def _bitcast(wrap, pfor_input):  # elementwise (a trailing axis at most changes): the seed axis stays in front
    import tensorflow as tf

    return [wrap(tf.bitcast(pfor_input.stacked_input(0), pfor_input.get_attr("type")), True)]


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


def _plain(pfor_input) -> bool:
    """NHWC with "VALID" or "SAME" padding: the convolutions the rules here rewrite."""
    return pfor_input.get_attr("data_format") == b"NHWC" and pfor_input.get_attr("padding") in (b"VALID", b"SAME")


def _tiling_window(pfor_input) -> tuple[int, int] | None:
    """The window of a max pooling whose windows tile its input (NHWC, window = strides, "VALID"),
    under XLA, with a static input shape; else None."""
    ksize, strides = list(pfor_input.get_attr("ksize")), list(pfor_input.get_attr("strides"))
    x = pfor_input.stacked_input(0) if pfor_input.input(0)[1] else None
    if (x is None or not _FOR_XLA or ksize != strides or ksize[0] != 1 or ksize[3] != 1
            or pfor_input.get_attr("padding") != b"VALID" or pfor_input.get_attr("data_format") != b"NHWC"
            or not x.shape[2:].is_fully_defined()):
        return None
    return ksize[1], ksize[2]


def tiled_max_pool_grad(x, dy, window: tuple[int, int]):
    """Max pooling's gradient where the windows tile ``x`` (seeds, batch, height, width, channels):
    each window's gradient goes to its first maximum, as ``MaxPoolGrad`` routes it; rows and
    columns that no window covers get zero. XLA's own ``MaxPoolGrad`` (select-and-scatter) cost
    as much as the convolution and its gradients together."""
    import tensorflow as tf

    kh, kw = window
    height, width, channels = x.shape[2:]
    oh, ow = height // kh, width // kw
    lead = tf.shape(x)[:2]
    win = tf.reshape(x[:, :, :oh * kh, :ow * kw, :], tf.concat([lead, [oh, kh, ow, kw, channels]], 0))
    win = tf.reshape(tf.transpose(win, [0, 1, 2, 4, 6, 3, 5]), tf.concat([lead, [oh, ow, channels, kh * kw]], 0))
    grads = tf.one_hot(tf.argmax(win, axis=-1), kh * kw, dtype=dy.dtype) * dy[..., None]
    grads = tf.reshape(grads, tf.concat([lead, [oh, ow, channels, kh, kw]], 0))
    grads = tf.reshape(tf.transpose(grads, [0, 1, 2, 5, 3, 6, 4]), tf.concat([lead, [oh * kh, ow * kw, channels]], 0))
    return tf.pad(grads, [[0, 0], [0, 0], [0, height - oh * kh], [0, width - ow * kw], [0, 0]])


def patches(x, kh: int, kw: int, strides, padding: str, dilations):
    """The (kh, kw) windows of ``x`` (seeds, batch, height, width, channels) with a static
    height and width, as ``conv2d`` slides them: (seeds, batch, out_h, out_w, kh * kw * channels),
    ordered (kh, kw, channels) like a kernel's rows. Strided slices, which XLA fuses into
    what consumes them (``tf.image.extract_patches`` and grouped convolutions it did not)."""
    import tensorflow as tf

    (sh, sw), (dh, dw) = strides[1:3], dilations[1:3]
    size = [int(d) for d in x.shape[2:4]]
    span = [(kh - 1) * dh + 1, (kw - 1) * dw + 1]
    if padding == "SAME":
        out = [-(-n // st) for n, st in zip(size, (sh, sw))]
        pads = [max((o - 1) * st + sp - n, 0) for o, st, sp, n in zip(out, (sh, sw), span, size)]
        x = tf.pad(x, [[0, 0], [0, 0], [pads[0] // 2, pads[0] - pads[0] // 2], [pads[1] // 2, pads[1] - pads[1] // 2],
                       [0, 0]])
    else:
        out = [(n - sp) // st + 1 for n, sp, st in zip(size, span, (sh, sw))]
    return tf.concat([x[:, :, i * dh:i * dh + (out[0] - 1) * sh + 1:sh, j * dw:j * dw + (out[1] - 1) * sw + 1:sw, :]
                      for i in range(kh) for j in range(kw)], axis=-1)


def patch_conv2d(x, kernels, strides, padding: str, dilations):
    """``conv2d(x[s], kernels[s])`` for every seed: its patches times its kernel (for XLA)."""
    import tensorflow as tf

    kh, kw, channels, filters = kernels.shape[1:]
    return tf.einsum("sbhwk,skf->sbhwf", patches(x, kh, kw, strides, padding, dilations),
                     tf.reshape(kernels, [-1, kh * kw * channels, filters]))


def _static_shape(sizes) -> tuple[int, ...] | None:
    """The value of a shape tensor, where the graph knows it: a constant, or the shape (as
    ``Shape``/``ShapeN`` gives it, the kernel's in a gradient) of a tensor of static shape."""
    import tensorflow as tf

    value = tf.get_static_value(sizes)
    if value is not None:
        return tuple(int(d) for d in value)
    op = sizes.op
    if op.type in ("Shape", "ShapeN") and op.inputs[sizes.value_index].shape.is_fully_defined():
        return tuple(op.inputs[sizes.value_index].shape.as_list())
    return None


def _window_attrs(pfor_input) -> tuple:
    return (pfor_input.get_attr("strides"), pfor_input.get_attr("padding").decode(), pfor_input.get_attr("dilations"))


def kernel_gradients(x, dy, kernel_shape, strides, padding: str, dilations):
    """Each seed's kernel gradient at once: the patches of ``x[s]`` against ``dy[s]``, one batched
    matrix product (XLA compiles it far better than a grouped convolution's kernel gradient)."""
    import tensorflow as tf

    kh, kw, channels, filters = (int(d) for d in kernel_shape)
    grads = tf.einsum("sbhwk,sbhwf->skf", patches(x, kh, kw, strides, padding, dilations), dy)
    return tf.reshape(grads, [-1, kh, kw, channels, filters])


def input_gradients(input_sizes, kernels, dy, strides, padding: str, dilations):
    """Each seed's input gradient at once: one grouped transposed convolution."""
    import tensorflow as tf

    n = tf.shape(kernels)[0]
    kh, kw, channels, filters = (tf.shape(kernels)[i] for i in (1, 2, 3, 4))
    batch, out_h, out_w = tf.shape(dy)[1], tf.shape(dy)[2], tf.shape(dy)[3]
    dy_ = tf.reshape(tf.transpose(dy, [1, 2, 3, 0, 4]), tf.stack([batch, out_h, out_w, n * filters]))
    k_ = tf.reshape(tf.transpose(kernels, [1, 2, 3, 0, 4]), tf.stack([kh, kw, channels, n * filters]))
    sizes = tf.concat([input_sizes[:3], [n * channels]], 0)
    grads = tf.raw_ops.Conv2DBackpropInput(input_sizes=sizes, filter=k_, out_backprop=dy_, strides=strides,
                                           padding=padding, dilations=dilations)
    grads = tf.reshape(grads, tf.stack([batch, input_sizes[1], input_sizes[2], n, channels]))
    return tf.transpose(grads, [3, 0, 1, 2, 4])
