"""The window sums of :mod:`.quadrature`: log Σ p(x, z) over each image's window of lattice
points, computed per tile of TILE² points, each decoded point stored once (by its exact
position, across lattices and rounds) in a cache whose memory is reused from model to model.
The method: ``docs/method.md``."""

from __future__ import annotations

import mmap
import threading

import numpy as np
import tensorflow as tf

TILE = 16  # lattice steps per tile side: smaller tiles waste fewer points, cost more bookkeeping
# images per slot below image_chunk: a tile's image count, rounded up (to at most twice it)
SLOT_SIZES = (4, 8, 16, 32, 64, 128)
PAIRS_PER_CALL = 1024  # (image, tile) pairs per call of _tile_sums: 1024 / G slots of G images
DECODE_CHUNK = 4096  # points per decoder call (the last one padded: one compiled shape)
# Positions are stored as integers on the lattice of this level (spacing 2^-20 ≈ 1e-6, |z| <
# 2048 in int32), so a point shared by two lattices has one key and keys sort fast as int64.
FINEST_LEVEL = 20


def position_keys(level, i, j):
    """One int64 per lattice point 2^-level·(i, j): the same key for the same point on any
    lattice (level <= FINEST_LEVEL)."""
    shift = FINEST_LEVEL - np.asarray(level, np.int64)
    return (np.left_shift(i, shift) << 32) | (np.left_shift(j, shift) & 0xFFFFFFFF)


def key_indices(keys):
    """The finest-lattice indices (i, j), int64, of position_keys' keys."""
    return keys >> 32, (keys & 0xFFFFFFFF).astype(np.uint32).view(np.int32).astype(np.int64)


def positions(i, j):
    """The z (float32, (n, 2)) of finest-lattice indices (i, j), as key_indices gives them."""
    return (np.stack([i, j], 1) * 2.0 ** -FINEST_LEVEL).astype(np.float32)


def z_order(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The permutation that puts lattice points (i, j) (int64, |i|, |j| < 2^31) on the Z-order
    (Morton) curve, interleaving the bits of i and j: consecutive points are near each other,
    so a group of them turns on few of the decoder's units (:mod:`.fast`)."""
    def spread(v):  # bit b of v to bit 2b
        v = (v + 2**31).astype(np.uint64)
        for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF),
                            (4, 0x0F0F0F0F0F0F0F0F), (2, 0x3333333333333333),
                            (1, 0x5555555555555555)):
            v = (v | (v << np.uint64(shift))) & np.uint64(mask)
        return v
    return np.argsort((spread(i) << np.uint64(1)) | spread(j), kind="stable")


@tf.function(reduce_retracing=True)  # one trace for every slot size: shapes left open
def _tile_sums(x, x_bias, images, features, constant, rows, origin, lo, hi):
    """For B tiles (stored points ``rows`` (B, TILE²), first lattice point ``origin`` (B, 2))
    and G images each (``images`` (B, G), windows [lo, hi] (B, G, 2)): each image's max of
    log p(x|z) + log p(z) over the tile's points in its window, and the float64 sums of
    exp(. - max) over those points, over those on the 2h subgrid (even indices) and over those
    in the window's outer band (outside the central 75% of its width either way)."""
    # TensorFlow's batched matmul is 1.5-4x faster here than XLA's (small G especially)
    log_joint = tf.matmul(tf.gather(x, images), tf.gather(features, rows), transpose_b=True)
    log_joint += tf.gather(x_bias, images)[..., None] + tf.gather(constant, rows)[:, None, :]
    return _masked_sums(tf.reshape(log_joint, [PAIRS_PER_CALL, -1]),
                        tf.repeat(origin, tf.shape(images)[1], axis=0),
                        tf.reshape(lo, [-1, 2]), tf.reshape(hi, [-1, 2]))


@tf.function(jit_compile=True)  # XLA fuses the mask arithmetic; one shape for every slot size
def _masked_sums(log_joint, origin, lo, hi):
    """The sums of _tile_sums for each (image, tile) pair: log_joint (pairs, TILE²)."""
    steps = tf.range(TILE, dtype=origin.dtype)
    i, j = origin[:, :1] + steps, origin[:, 1:] + steps  # (pairs, TILE): rows, columns
    lo_i, lo_j, hi_i, hi_j = lo[:, :1], lo[:, 1:], hi[:, :1], hi[:, 1:]
    band_i, band_j = (hi_i - lo_i) // 8, (hi_j - lo_j) // 8
    row_in, column_in = (i >= lo_i) & (i <= hi_i), (j >= lo_j) & (j <= hi_j)
    inside = row_in[:, :, None] & column_in[:, None, :]
    log_joint = tf.where(inside, tf.reshape(log_joint, [-1, TILE, TILE]), -np.inf)
    peak = tf.reduce_max(log_joint, axis=[1, 2])
    peak = tf.where(tf.math.is_finite(peak), peak, 0.0)
    scaled = tf.cast(tf.exp(log_joint - peak[:, None, None]), tf.float64)  # 0 outside
    central = ((i >= lo_i + band_i) & (i <= hi_i - band_i))[:, :, None] & (
        (j >= lo_j + band_j) & (j <= hi_j - band_j))[:, None, :]
    sums = [tf.reduce_sum(scaled, axis=[1, 2]),
            tf.reduce_sum(scaled[:, ::2, ::2], axis=[1, 2]),  # even i and j: TILE is even
            tf.reduce_sum(tf.where(central, tf.zeros_like(scaled), scaled), axis=[1, 2])]
    return tf.cast(peak, tf.float64), tf.stack(sums, axis=-1)


def _aligned_empty(*shape) -> tuple[np.ndarray, mmap.mmap]:
    """An uninitialised float32 array at a page boundary (TensorFlow needs 64 bytes for memory
    it shares), in a private anonymous mapping (returned too), given back to the system when
    both are freed."""
    memory = mmap.mmap(-1, max(int(np.prod(shape)) * 4, 1),
                       flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(memory, np.float32, int(np.prod(shape))).reshape(shape), memory


# The stores of finished caches, kept for the next cache of their size: fresh memory costs a
# page fault per page at first write, a second of system time per model (docs/performance.md).
# Kept stores are marked MADV_FREE: the kernel takes their pages back if it runs short.
SPARE_STORES = 2  # the default run evaluates two models at a time
Stores = tuple[tuple[np.ndarray, mmap.mmap], tuple[np.ndarray, mmap.mmap]]
_spare: list[Stores] = []
_spare_lock = threading.Lock()


def _stores(capacity: int, features: int) -> Stores:
    """The (array, mapping) of a cache's features and constants: a finished cache's of this
    size, or fresh."""
    with _spare_lock:
        for i, ((kept, _), _) in enumerate(_spare):
            if kept.shape == (capacity, features):
                return _spare.pop(i)
    return _aligned_empty(capacity, features), _aligned_empty(capacity)


def _keep_spare(stores: Stores) -> None:
    if hasattr(mmap, "MADV_FREE"):
        for _, memory in stores:
            memory.madvise(mmap.MADV_FREE)
    with _spare_lock:
        _spare.append(stores)
        del _spare[:max(len(_spare) - SPARE_STORES, 0)]  # the most recent are kept


def decoded(decode, z: np.ndarray):
    """``decode`` (features, constant) of the points z (float32 (n, 2)) DECODE_CHUNK at a time,
    the last chunk padded (one compiled shape): yields (first point, features, constant)."""
    for start in range(0, len(z), DECODE_CHUNK):
        part = z[start:start + DECODE_CHUNK]
        features, constant = decode(np.pad(part, [(0, DECODE_CHUNK - len(part)), (0, 0)]))
        yield start, features[:len(part)], constant[:len(part)]


class PointCache:
    """Decoded grid points (features, constant) by position_keys, at most ``capacity`` of
    them. New points are appended; when they no longer fit, only the points asked for are
    kept (moved to the front) and the rest forgotten."""

    def __init__(self, decode, capacity: int, features: int):
        self.decode, self.capacity = decode, capacity
        self.keys, self.rows, self.used = np.empty(0, np.int64), np.empty(0, np.int64), 0
        self._memory = _stores(capacity, features)
        (self.features, _), (self.constant, _) = self._memory  # rows are written once

    def release(self) -> None:
        """Done with this cache: its memory goes to the next one (see ``_stores``)."""
        _keep_spare(self._memory)
        self.features = self.constant = self._memory = None

    def rows_of(self, keys: np.ndarray):
        """Rows of the sorted unique position keys ``keys`` (missing ones decoded), and the
        stores as tensors sharing their memory (a copy per call would cost seconds)."""
        where = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        hit = self.keys[where] == keys if len(self.keys) else np.zeros(len(keys), bool)
        rows = np.where(hit, self.rows[where] if len(self.keys) else 0, -1)
        missing = np.flatnonzero(~hit)
        i, j = key_indices(keys[missing])
        order = z_order(i, j)  # decoded in this order
        missing, i, j = missing[order], i[order], j[order]
        if self.used + len(missing) > self.capacity:
            self._keep(keys[hit], rows[hit])
            rows[hit] = self.rows
        rows[missing] = self.used + np.arange(len(missing))
        for start, features, constant in decoded(self.decode, positions(i, j)):
            row = slice(self.used + start, self.used + start + len(features))
            self.features[row], self.constant[row] = features, constant
        self.used += len(missing)
        if len(missing):
            self.keys = np.concatenate([self.keys, keys[missing]])
            self.rows = np.concatenate([self.rows, rows[missing]])
            order = np.argsort(self.keys, kind="stable")
            self.keys, self.rows = self.keys[order], self.rows[order]
        return rows, [tf.experimental.dlpack.from_dlpack(store.__dlpack__())
                      for store in (self.features, self.constant)]

    def _keep(self, keys, rows):
        """Forget every point but ``keys`` (sorted), stored at ``rows``: they move to rows
        0, 1, ... in their present order (in place: the n-th kept row is >= n)."""
        order = np.argsort(rows)
        for start in range(0, len(rows), DECODE_CHUNK):
            part = rows[order[start:start + DECODE_CHUNK]]
            self.features[start:start + len(part)] = self.features[part]
            self.constant[start:start + len(part)] = self.constant[part]
        self.rows = np.empty(len(rows), np.int64)
        self.rows[order] = np.arange(len(rows))
        self.keys, self.used = keys, len(rows)


def _tiles(level, lo, hi):
    """The (image, tile) pairs, in image order, of the tiles (level, ti, tj) each window
    [lo, hi] touches; each tile's TILE² position keys (row-major), and whether each lies in
    some window of its tile's images: only those are decoded (~10% fewer)."""
    first, shape = lo // TILE, hi // TILE - lo // TILE + 1
    count = shape.prod(axis=1)
    image = np.repeat(np.arange(len(lo)), count)
    step = np.arange(len(image)) - np.repeat(np.cumsum(count) - count, count)
    tile = first[image] + np.stack([step // shape[image, 1], step % shape[image, 1]], 1)
    # one int64 per tile for np.unique (|tile index| < 2^27 as positions are < 2^31)
    tile_key = ((level[image] << 28) + tile[:, 0] + 2**27 << 28) + tile[:, 1] + 2**27
    _, first_pair, tile_of_pair = np.unique(tile_key, return_index=True, return_inverse=True)
    tiles = np.column_stack([level[image[first_pair]], tile[first_pair]])
    steps = np.arange(TILE)
    i = np.broadcast_to(tiles[:, 1, None, None] * TILE + steps[:, None], (len(tiles), TILE, TILE))
    j = np.broadcast_to(tiles[:, 2, None, None] * TILE + steps[None, :], (len(tiles), TILE, TILE))
    keys = position_keys(tiles[:, 0, None, None], i, j)
    # how many of its images' windows cover each point: 2-D differences, summed up
    a, b = np.clip(lo[image] - tile * TILE, 0, TILE), np.clip(hi[image] - tile * TILE + 1, 0, TILE)
    side = TILE + 1
    corners = [(a, a, 1), (b, a, -1), (a, b, -1), (b, b, 1)]
    index = np.concatenate([(tile_of_pair * side + row[:, 0]) * side + column[:, 1]
                            for row, column, _ in corners])
    weight = np.repeat([sign for _, _, sign in corners], len(image))
    count = np.bincount(index, weight, len(tiles) * side**2).reshape(len(tiles), side, side)
    covered = count.cumsum(1).cumsum(2)[:, :TILE, :TILE] > 0.5
    return (image, tiles, tile_of_pair, keys.reshape(len(tiles), -1),
            covered.reshape(len(tiles), -1))


def _slots(tile_of_pair: np.ndarray, image_chunk: int):
    """Each tile's pairs in slots of G images, G its image count rounded up to a slot size (at
    most image_chunk: bigger tiles fill several slots). Yields per G the slots' pairs
    (slots, G), padded with -1, and each slot's tile."""
    sizes = np.array([s for s in SLOT_SIZES if s < image_chunk] + [image_chunk])
    order = np.argsort(tile_of_pair, kind="stable")
    tile = tile_of_pair[order]
    size = sizes[np.minimum(np.searchsorted(sizes, np.bincount(tile)), len(sizes) - 1)][tile]
    rank = np.arange(len(tile)) - np.searchsorted(tile, tile)  # position within its tile
    for g in sizes:
        mine = np.flatnonzero(size == g)
        slot = np.cumsum(rank[mine] % g == 0) - 1
        table, slot_tile = np.full((len(mine) and slot[-1] + 1, g), -1), np.zeros(len(mine), int)
        table[slot, rank[mine] % g], slot_tile[slot] = order[mine], tile[mine]
        yield table, slot_tile[:len(table)]


def window_log_sums(x, x_bias, images, level, lo, hi, cache, image_chunk):
    """Per image (rows ``images`` of x): log Σ p(x, z) over the points 2^-level·(i, j) of its
    window lo ≤ (i, j) ≤ hi; columns all points, the 2h subgrid, the window's edge."""
    image, tiles, tile_of_pair, positions, needed = _tiles(level, lo, hi)
    peak, sums = np.zeros(len(image)), np.zeros((len(image), 3))
    group = cache.capacity // TILE**2  # tiles whose points the cache can hold at once
    for start in range(0, len(tiles), group):
        now = slice(start, start + group)
        keys, inverse = np.unique(positions[now][needed[now]], return_inverse=True)
        rows = np.zeros(needed[now].shape, np.int64)  # a point outside every window: any row
        stored, (features, constant) = cache.rows_of(keys)
        rows[needed[now]] = stored[inverse]
        pairs = np.flatnonzero((tile_of_pair >= start) & (tile_of_pair < start + group))
        for table, slot_tile in _slots(tile_of_pair[pairs] - start, image_chunk):
            per_call = PAIRS_PER_CALL // table.shape[1]
            for first in range(0, len(table), per_call):  # the last call padded with -1
                part = np.pad(table[first:first + per_call], [(0, per_call), (0, 0)],
                              constant_values=-1)[:per_call]
                tile = np.pad(slot_tile[first:first + per_call], [(0, per_call)])[:per_call]
                valid, pair = part >= 0, pairs[np.maximum(part, 0)]
                no_window = ~valid[..., None]
                slot_peak, slot_sums = _tile_sums(
                    x, x_bias, images[image[pair]], features, constant, rows[tile],
                    tiles[start + tile, 1:] * TILE, np.where(no_window, 1, lo[image[pair]]),
                    np.where(no_window, 0, hi[image[pair]]))
                peak[pair[valid]] = slot_peak.numpy()[valid.reshape(-1)]
                sums[pair[valid]] = slot_sums.numpy()[valid.reshape(-1)]
    with np.errstate(divide="ignore"):  # logsumexp over each image's pairs
        log_part = peak[:, None] + np.log(sums)
        starts = np.searchsorted(image, np.arange(len(images)))
        top = np.maximum.reduceat(log_part, starts)
        top = np.where(np.isfinite(top), top, 0.0)
        return top + np.log(np.add.reduceat(np.exp(log_part - top[image]), starts))
