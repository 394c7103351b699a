"""The true held-out likelihood of a model with a 2-D latent, by quadrature.

With two latent dimensions, p(x) = ∫ p(x|z) p(z) dz can be summed on a grid of z to high
accuracy, which turns -ELBO and IWAE-K from bounds of unknown slack into numbers whose gaps to
the truth can be measured.

Method, and why:
- Given the decoder's logits l(z), both likelihoods are *linear* in the pixels x ∈ [0, 1]:
  Bernoulli log p(x|z) = x·l - Σ softplus(l), continuous Bernoulli adds Σ log C(l) (TFP's
  normaliser). So log p(x|z) = x·l(z) + log p(0|z), the constant being TFP's ``log_prob`` of
  the all-zero image (for Bernoulli written out, -Σ softplus(l): same value, half the time).
  For many images and grid points that is a float32 matrix product plus a per-point term: the
  decoder (the expensive part) runs once per grid point, for every image that needs it. Where
  the logits are a final Dense layer of fewer features f(z) (the MLP: 256), x·l(z) =
  (x·Wᵀ)·f(z) + x·b, so the products and the stored points use f, a third of the size.
- A single global grid would need millions of points here: trained posteriors are as narrow
  as σ ≈ 0.005 in a latent box of width ~10. So points lie on nested global lattices of
  spacing h_k = 2^-k, and each image uses the lattice with h ≤ σ_min / ``points_per_sigma``
  (σ of its encoder posterior q(z|x)), over its window μ ± ``window``·σ.
- The sum is the trapezoid rule h² Σ p(x|z_g) p(z_g), accumulated in float64; for smooth peaked
  integrands it converges faster than any power of h (a Gaussian of scale σ sampled at h = σ:
  relative error ~1e-8).
- Error estimate per image: |log S_h - log S_2h|, the same sum on the every-other-point (2h)
  subgrid (this is the coarser sum's error, so it overstates the reported sum's), plus the
  fraction of the mass in the window's outer band (outside its central 75% each way): for a
  decaying tail, the mass cut off beyond the window is below that. Images above ``tolerance``
  are redone on the next finer lattice (quadrature error) or a window twice as wide (band
  mass), up to ``max_refinements`` times and ``max_points_per_image``; whatever remains is
  reported. True posteriors are often wider than q (seen: 8σ of a barely trained model's q
  missed 0.5 nats; 32σ agreed with a brute-force grid to 0.001).
- Not covered: a second posterior mode farther than the window from q's mean (q is trained to
  sit on the mass, and the tests compare with a brute-force grid over the whole prior box).
  float32 products add ~1e-4 nats of rounding.

Speed: decoding is compute-bound (~0.5 MFLOP a point), so each point is decoded once. On three
10-epoch models (10,000 test images) the first round's windows hold 1.1-1.5e5 points, each
later round's (~4000, ~800, ~100 images, on finer lattices or 16-64σ windows) 2.8-7.2e5;
0.6-0.9e6 are decoded in all (one model as whole 32x32-point blocks per round: 2.5e6). A
round takes its images (all levels at once) as (image, tile) pairs, a tile being TILE² lattice
points, and decodes the tile points inside some window. Decoded points are kept by exact
position (a level-k point is one of every finer level) across levels and into the next round,
whose wider or finer windows repeat its images' points, in up to ``cache_mb`` of memory (0.55-
0.75 GB used here); a round needing more runs in groups of tiles. Products run per tile, its
images padded to a few slot sizes, ~1024 (image, tile) pairs per call.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from vae_model import UserInputError
from vae_model.data import IMAGE_SHAPE
from vae_model.networks import compiled_for_model

PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
TILE = 16  # lattice steps per tile side: smaller tiles waste fewer points, cost more bookkeeping
SLOT_SIZES = (4, 16, 64)  # images per slot below image_chunk: a tile's image count, rounded up
PAIRS_PER_CALL = 1024  # (image, tile) pairs per call of _tile_sums: 1024 / G slots of G images
DECODE_CHUNK = 4096  # points per decoder call (the last one padded: one compiled shape)


@compiled_for_model
def _posterior(model, images):
    q = model.encode(tf.cast(images, tf.float32) / 255.0)
    return q.mean(), q.stddev()


def _body(model, z):
    """f(z): the decoder's layers before its final Dense one."""
    for layer in model.decoder.layers[:-2]:
        z = layer(z)
    return z


def _readout(model):
    """(W, b) if the logits are f(z) @ W + b with fewer features than pixels (a final Dense
    layer, then a Reshape; checked on a few points), else None: the features are the logits."""
    layers = getattr(model.decoder, "layers", [])
    dense = layers[-2] if len(layers) > 2 else None
    kernel, bias = getattr(dense, "kernel", None), getattr(dense, "bias", None)
    if kernel is None or bias is None or not kernel.shape[0] < PIXELS == kernel.shape[1]:
        return None
    z = tf.constant(np.linspace(-3.0, 3.0, 32).reshape(16, 2), tf.float32)
    logits = tf.reshape(model.decode(z).distribution.logits, [-1, PIXELS])
    atol = 1e-4 * float(tf.reduce_max(tf.abs(logits)))
    fits = np.allclose(_body(model, z) @ kernel + bias, logits, rtol=1e-4, atol=atol)
    return (kernel, bias) if fits else None


@compiled_for_model
def _grid_terms(model, z, split):
    """Per grid point: the features (f(z) if ``split``, else the logits) and log p(0|z) +
    log p(z). (XLA computes f(z) once, for the features and inside the decoder.)"""
    likelihood = model.decode(z)
    logits = tf.reshape(likelihood.distribution.logits, [-1, PIXELS])
    if isinstance(likelihood.distribution, tfp.distributions.Bernoulli):
        # TFP's log_prob(0) evaluates softplus of l and of -l (then multiplies one by zero)
        empty = -tf.reduce_sum(tf.math.softplus(logits), axis=1)
    else:
        empty = likelihood.log_prob(tf.zeros(tf.concat([tf.shape(z)[:1], IMAGE_SHAPE], 0)))
    return _body(model, z) if split else logits, empty + model.prior.log_prob(z)


@tf.function
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
    steps = tf.range(TILE * TILE, dtype=origin.dtype)
    i, j = origin[:, :1] + steps // TILE, origin[:, 1:] + steps % TILE
    lo_i, lo_j, hi_i, hi_j = lo[:, :1], lo[:, 1:], hi[:, :1], hi[:, 1:]
    inside = (i >= lo_i) & (i <= hi_i) & (j >= lo_j) & (j <= hi_j)
    even = inside & (i % 2 == 0) & (j % 2 == 0)
    band_i, band_j = (hi_i - lo_i) // 8, (hi_j - lo_j) // 8
    edge = inside & ((i < lo_i + band_i) | (i > hi_i - band_i) |
                     (j < lo_j + band_j) | (j > hi_j - band_j))
    log_joint = tf.where(inside, log_joint, -np.inf)
    peak = tf.reduce_max(log_joint, axis=-1)
    peak = tf.where(tf.math.is_finite(peak), peak, 0.0)
    scaled = tf.cast(tf.exp(log_joint - peak[..., None]), tf.float64)
    sums = [tf.reduce_sum(tf.where(mask, scaled, 0.0), axis=-1) for mask in (inside, even, edge)]
    return tf.cast(peak, tf.float64), tf.stack(sums, axis=-1)


def _encode(model, images: np.ndarray, batch_size: int = 2000):
    means, scales = [], []
    for start in range(0, len(images), batch_size):
        mean, scale = _posterior(model, images[start:start + batch_size])
        means.append(mean.numpy()), scales.append(scale.numpy())
    return np.concatenate(means).astype(np.float64), np.concatenate(scales).astype(np.float64)


def _aligned_empty(*shape) -> np.ndarray:
    """np.empty float32 at a 64-byte boundary, which TensorFlow requires of memory it shares."""
    raw = np.empty(int(np.prod(shape)) * 4 + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + int(np.prod(shape)) * 4].view(np.float32).reshape(shape)


class _PointCache:
    """Decoded grid points (features, constant) by exact position, as complex keys z1 + i·z2
    (they sort lexicographically; positions are dyadic, so a point shared by two lattices has
    one key). Holds what the current group of tiles needs, at most ``capacity`` points."""

    def __init__(self, decode, capacity: int, features: int):
        self.decode, self.capacity = decode, capacity
        self.keys, self.rows = np.empty(0, complex), np.empty(0, int)
        self.features = _aligned_empty(capacity, features)  # memory is used as rows are written
        self.constant = _aligned_empty(capacity)

    def rows_of(self, keys: np.ndarray):
        """Rows of the sorted unique positions ``keys`` (other points are dropped, missing ones
        decoded), and the stores as tensors sharing their memory (a copy per call would cost
        seconds)."""
        where = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        hit = np.flatnonzero(self.keys[where] == keys) if len(self.keys) else where[:0]
        order = np.argsort(self.rows[where[hit]])
        kept = self.rows[where[hit]][order]
        for start in range(0, len(kept), DECODE_CHUNK):  # in place: row kept[n] >= n
            part = kept[start:start + DECODE_CHUNK]
            self.features[start:start + len(part)] = self.features[part]
            self.constant[start:start + len(part)] = self.constant[part]
        rows = np.full(len(keys), -1)
        rows[hit[order]] = np.arange(len(kept))
        missing = np.flatnonzero(rows < 0)
        rows[missing] = len(kept) + np.arange(len(missing))
        z = np.stack([keys[missing].real, keys[missing].imag], 1).astype(np.float32)
        for start in range(0, len(z), DECODE_CHUNK):
            part = z[start:start + DECODE_CHUNK]
            features, constant = self.decode(np.pad(part, [(0, DECODE_CHUNK - len(part)), (0, 0)]))
            row = slice(len(kept) + start, len(kept) + start + len(part))
            self.features[row], self.constant[row] = features[:len(part)], constant[:len(part)]
        self.keys, self.rows = keys, rows
        return rows, [tf.experimental.dlpack.from_dlpack(store.__dlpack__())
                      for store in (self.features, self.constant)]


def _tiles(level, lo, hi):
    """The (image, tile) pairs, in image order, of the tiles (level, ti, tj) each window
    [lo, hi] touches; each tile's TILE² positions (as in _PointCache, row-major), and whether
    each lies in some window of its tile's images: only those are decoded (~10% fewer)."""
    first, shape = lo // TILE, hi // TILE - lo // TILE + 1
    count = shape.prod(axis=1)
    image = np.repeat(np.arange(len(lo)), count)
    step = np.arange(len(image)) - np.repeat(np.cumsum(count) - count, count)
    tile = first[image] + np.stack([step // shape[image, 1], step % shape[image, 1]], 1)
    tiles, tile_of_pair = np.unique(np.column_stack([level[image], tile]), axis=0,
                                    return_inverse=True)
    tile_of_pair = tile_of_pair.reshape(-1)
    steps, h = np.arange(TILE), 2.0 ** -tiles[:, 0, None, None]
    i = (tiles[:, 1, None, None] * TILE + steps[:, None]) * h
    j = (tiles[:, 2, None, None] * TILE + steps[None, :]) * h
    a, b = np.clip(lo[image] - tile * TILE, 0, TILE), np.clip(hi[image] - tile * TILE + 1, 0, TILE)
    count = np.zeros((len(tiles), TILE + 1, TILE + 1), int)  # 2-D differences of the windows
    for row, column, sign in ((a, a, 1), (b, a, -1), (a, b, -1), (b, b, 1)):
        np.add.at(count, (tile_of_pair, row[:, 0], column[:, 1]), sign)
    covered = count.cumsum(1).cumsum(2)[:, :TILE, :TILE] > 0
    return (image, tiles, tile_of_pair, (i + 1j * j).reshape(len(tiles), -1),
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


def _window_log_sums(x, x_bias, images, level, lo, hi, cache, image_chunk):
    """Per image (rows ``images`` of x): log Σ p(x, z) over the points 2^-level·(i, j) of its
    window lo ≤ (i, j) ≤ hi; columns all points, the 2h subgrid, the window's edge."""
    image, tiles, tile_of_pair, positions, needed = _tiles(level, lo, hi)
    peak, sums = np.zeros(len(image)), np.zeros((len(image), 3))
    group = cache.capacity // TILE**2  # tiles whose points the cache can hold at once
    for start in range(0, len(tiles), group):
        now = slice(start, start + group)
        keys, inverse = np.unique(positions[now][needed[now]], return_inverse=True)
        rows = np.zeros(needed[now].shape, int)  # a point outside every window: any row
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


def reference_nll(model, images: np.ndarray, tolerance: float = 0.02, window: float = 8.0,
                  points_per_sigma: float = 1.0, max_refinements: int = 3,
                  max_points_per_image: int = 2**16, image_chunk: int = 256,
                  cache_mb: float = 1024) -> dict:
    """-log p(x) per image (nats) for a 2-D latent ``model`` and uint8 ``images``, by
    quadrature (see the module docstring). ``image_chunk``: most images per tile in one
    product slot; ``cache_mb``: memory for decoded points. Returns {"per_image": float64
    array, "error": per-image error estimate, "mean", "mean_error" (mean of the per-image
    errors, a bound on the mean's error), "method": description of grid and bounds}."""
    if model.latent_size != 2:
        raise UserInputError(f"the reference likelihood needs a 2-D latent (grid quadrature), "
                             f"this model has latent_size {model.latent_size}")
    x = tf.constant(images.reshape(len(images), PIXELS).astype(np.float32) / 255.0)
    readout = _readout(model)  # if any, x·l(z) = (x·Wᵀ)·f(z) + x·b
    x_bias = tf.linalg.matvec(x, readout[1]) if readout else tf.zeros(len(images))
    x = tf.matmul(x, readout[0], transpose_b=True) if readout else x
    cache = _PointCache(lambda z: [t.numpy() for t in _grid_terms(model, z, bool(readout))],
                        max(TILE**2, int(cache_mb * 2**20) // (4 * x.shape[1] + 4)), x.shape[1])
    mean, scale = _encode(model, images)
    level = np.maximum(0, np.ceil(np.log2(points_per_sigma / scale.min(1)))).astype(np.int64)
    windows = np.full(len(images), float(window))
    nll, error = np.empty(len(images)), np.full(len(images), np.inf)
    todo, finest = np.arange(len(images)), 0
    for _ in range(max_refinements + 1):
        finest = max(finest, int(level[todo].max()))
        h, half_width = 2.0 ** -level[todo], windows[todo, None] * scale[todo]
        lo = np.floor((mean[todo] - half_width) / h[:, None]).astype(np.int64)
        hi = np.ceil((mean[todo] + half_width) / h[:, None]).astype(np.int64)
        sums = _window_log_sums(x, x_bias, todo, level[todo], lo, hi, cache, image_chunk)
        log_h, log_2h = sums[:, 0] + 2 * np.log(h), sums[:, 1] + 2 * np.log(2 * h)
        edge = np.exp(sums[:, 2] - sums[:, 0])  # the fraction of the mass on the window's edge
        quadrature_error = np.abs(log_h - log_2h)
        nll[todo], error[todo] = -log_h, np.nan_to_num(quadrature_error + edge, nan=np.inf)
        coarse, truncated = quadrature_error > tolerance / 2, edge > tolerance / 2
        # widen first: a truncated sum's quadrature error is not yet meaningful
        finer = level[todo] + (coarse & ~truncated)
        wider = windows[todo] * np.where(truncated, 2.0, 1.0)
        # Posteriors far wider than q in one direction would need millions of points at the
        # resolution q's narrowest scale asks for: those keep their (reported) error.
        points = np.prod(2 * wider[:, None] * scale[todo] * 2.0 ** finer[:, None] + 2, axis=1)
        affordable = points <= max_points_per_image
        level[todo[affordable]], windows[todo[affordable]] = finer[affordable], wider[affordable]
        todo = todo[(coarse | truncated) & affordable]
        if not len(todo):
            break
    method = (f"trapezoid-rule quadrature over z on lattices of spacing 2^-k (finest "
              f"2^-{finest}), per image h <= sigma_min/{points_per_sigma:g} over mu ± "
              f"{window:g}·sigma of q(z|x) (widened where its outer band held mass); error = "
              f"|log S_h - log S_2h| + outer-band mass fraction, refined up to {max_refinements} "
              f"times towards {tolerance:g} nats")
    return {"per_image": nll, "error": error, "mean": float(nll.mean()),
            "mean_error": float(error.mean()), "method": method}
