"""Each seed's row order, epoch by epoch: counter-based, the same whichever chunk the seed trains in."""

from __future__ import annotations


def _mix32(h):
    """MurmurHash3's 32-bit finalizer: a bijection that spreads every input bit."""
    import tensorflow as tf

    h = h ^ tf.bitwise.right_shift(h, 16)
    h = h * tf.constant(0x85EBCA6B, tf.uint32)
    h = h ^ tf.bitwise.right_shift(h, 13)
    h = h * tf.constant(0xC2B2AE35, tf.uint32)
    return h ^ tf.bitwise.right_shift(h, 16)


def permutations(seed_keys, epoch, n_rows: int):
    """Row orders of shape (seeds, n_rows) for one epoch: argsort of hashed (seed, epoch, row).

    Counter-based, so a seed's order depends on nothing but its seed and the epoch, not on
    the chunk it trains in. (TensorFlow's RandomIndexShuffle does the same but costs about
    100x more with one key per element.)
    """
    import tensorflow as tf

    u32 = tf.uint32
    key = _mix32(seed_keys * tf.constant(0x9E3779B9, u32) + _mix32(epoch + tf.constant(0x632BE5AB, u32)))
    rows = tf.range(n_rows, dtype=tf.int32)
    h = _mix32(key[:, None] ^ (tf.cast(rows, u32)[None, :] * tf.constant(0x27D4EB2F, u32)))
    return stable_argsort(tf.cast(h, tf.int64))


# Up to this many rows, an epoch's order is ranked by comparing every pair of rows: one fused
# loop instead of XLA's sort (case-study MLP, 30 seeds: 31.4 -> 25.5 us per model-epoch).
PAIRWISE_ROWS = 64


def stable_argsort(keys):
    """``tf.argsort(keys, axis=1, stable=True)`` for ``keys`` (seeds, n), with n static: for n up
    to :data:`PAIRWISE_ROWS`, each row's rank is the number of keys before it (smaller, or
    equal and earlier), and the order puts each row at its rank: the same permutation."""
    import tensorflow as tf

    n = int(keys.shape[1])
    if n > PAIRWISE_ROWS:
        return tf.argsort(keys, axis=1, stable=True)
    i = tf.range(n)
    mine, other = keys[:, :, None], keys[:, None, :]  # (seeds, row, other row)
    before = (other < mine) | ((other == mine) & (i[None, None, :] < i[None, :, None]))
    rank = tf.reduce_sum(tf.cast(before, tf.int32), axis=2)
    # order[s, r] = the row whose rank is r
    return tf.reduce_sum(tf.where(rank[:, None, :] == i[None, :, None], i[None, None, :], 0), axis=2)
