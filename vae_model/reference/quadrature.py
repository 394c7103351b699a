"""The true held-out likelihood of a model with a 2-D latent, by quadrature.

With two latent dimensions, p(x) = ∫ p(x|z) p(z) dz can be summed on a grid of z to high
accuracy, which turns -ELBO and IWAE-K from bounds of unknown slack into numbers whose gaps to
the truth can be measured. Per image: the trapezoid rule on the lattice of spacing 2^-k fine
enough for its q(z|x), over a window around q's mean; log p(x|z) = x·l(z) + log p(0|z) is linear
in the pixels, so many images share each decoded point through one matrix product. The error
estimate (the 2h subgrid, the mass in the window's outer band, and a coarse probe for mass far
from q) drives finer lattices and wider windows until each image is within ``tolerance``. The
method in full, and how it is checked: ``docs/method.md``.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from vae_model import UserInputError
from vae_model.model import fast_math
from vae_model.model.data import IMAGE_SHAPE
from vae_model.model.networks import compiled_for_model
from vae_model.reference import fast as fast_reference
from vae_model.reference.tiles import FINEST_LEVEL, TILE, PointCache, decoded, window_log_sums
from vae_model.runs import stopping

PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
# The probe for mass outside the windows: a lattice of spacing 2^-PROBE_LEVEL over the box
# |z_k| <= PROBE_BOX (the prior's density at its edge: e^-12.5 of its peak per dimension)
PROBE_LEVEL, PROBE_BOX = 3, 5.0
# Where the probe found mass outside a window, the window reaches out over the probe points within
# e^HEAVY of the heaviest: the others (< 6,561 points, each below e^-14 of it) hold < 0.6% of the
# mass outside, which the next round's probe still counts.
HEAVY = 14.0


class Probe:
    """log p(x, z) of every image on a coarse lattice over the prior's box, for the mass its
    window leaves out: q(z|x) can sit on one mode of a posterior whose mass lies mostly
    elsewhere (seen: 2% of test images, by up to 100 nats), where the window's own tests (the
    2h subgrid, the mass in its outer band) see nothing amiss."""

    CHUNK = 1024  # images per call (the last padded: one compiled shape)

    def __init__(self, x, x_bias, decode):
        steps = int(PROBE_BOX * 2**PROBE_LEVEL)
        axis = np.arange(-steps, steps + 1, dtype=np.int32)
        self.k = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
        terms = list(decoded(decode, (self.k * 2.0**-PROBE_LEVEL).astype(np.float32)))
        self.features = tf.constant(np.concatenate([t[1] for t in terms]))
        self.constant = tf.constant(np.concatenate([t[2] for t in terms]))
        self.x, self.x_bias = x, x_bias

    def outside(self, images, level, lo, hi):
        """For rows ``images`` of x and their windows lo <= (i, j) <= hi on lattices of
        ``level``: the log of the probe's trapezoid sum outside each window (-inf if none),
        and the box (in z) of the probe points outside it within e^HEAVY of the heaviest."""
        shift = 2.0 ** (PROBE_LEVEL - level[:, None])  # window bounds in probe steps
        k_lo, k_hi = np.ceil(lo * shift), np.floor(hi * shift)
        bound = len(self.k)  # beyond every probe index
        k_lo, k_hi = (np.clip(k, -bound, bound).astype(np.int32) for k in (k_lo, k_hi))
        results = []
        for start in range(0, len(images), self.CHUNK):
            part = images[start:start + self.CHUNK]
            part = np.pad(part, (0, self.CHUNK - len(part)))
            window = [np.pad(k[start:start + self.CHUNK], [(0, self.CHUNK), (0, 0)])[:self.CHUNK]
                      for k in (k_lo, k_hi)]
            log_joint = tf.matmul(tf.gather(self.x, part), self.features, transpose_b=True)
            results.append([t.numpy() for t in _outside_sums(
                log_joint + tf.gather(self.x_bias, part)[:, None] + self.constant, self.k,
                *window)])
        n = len(images)
        log_mass, heavy_lo, heavy_hi = (np.concatenate(r)[:n] for r in zip(*results))
        step = 2.0**-PROBE_LEVEL
        return (log_mass.astype(np.float64) + 2 * np.log(step), heavy_lo * step,
                heavy_hi * step)


@tf.function(jit_compile=True)
def _outside_sums(log_joint, k, k_lo, k_hi):
    """Probe.outside's sums for a chunk: log_joint (images, points), point indices k
    (points, 2), windows [k_lo, k_hi] (images, 2) in probe steps."""
    inside = tf.reduce_all((k >= k_lo[:, None]) & (k <= k_hi[:, None]), -1)
    log_joint = tf.where(inside, -np.inf, log_joint)
    peak = tf.reduce_max(log_joint, 1, keepdims=True)
    finite = tf.where(tf.math.is_finite(peak), peak, 0.0)
    log_mass = finite[:, 0] + tf.math.log(tf.reduce_sum(tf.exp(log_joint - finite), 1))
    heavy = ((log_joint >= peak - HEAVY) & ~inside)[..., None]
    k = tf.cast(k, tf.float32)
    return (log_mass, tf.reduce_min(tf.where(heavy, k, np.inf), 1),
            tf.reduce_max(tf.where(heavy, k, -np.inf), 1))


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


def _grid_terms_numpy(model, split, z):
    return [t.numpy() for t in _grid_terms(model, z, split)]


def _box(mean, half_width, reach_lo, reach_hi):
    """The box in z a window covers: q's mean ± half_width, and the box it reaches out to."""
    return np.minimum(mean - half_width, reach_lo), np.maximum(mean + half_width, reach_hi)


def _encode(model, images: np.ndarray, batch_size: int = 2000):
    means, scales = [], []
    for start in range(0, len(images), batch_size):
        mean, scale = _posterior(model, images[start:start + batch_size])
        means.append(mean.numpy()), scales.append(scale.numpy())
    return np.concatenate(means).astype(np.float64), np.concatenate(scales).astype(np.float64)


def reference_nll(model, images: np.ndarray, tolerance: float = 0.02, window: float = 8.0,
                  points_per_sigma: float = 1.0, max_refinements: int = 3,
                  max_points_per_image: int = 2**18, image_chunk: int = 256,
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
    if readout and fast_math.supports(model):
        decode = fast_reference.grid_terms(model)  # the same terms, faster
    else:
        decode = functools.partial(_grid_terms_numpy, model, bool(readout))
    capacity = max(TILE**2, int(cache_mb * 2**20) // (4 * x.shape[1] + 4))
    cache = PointCache(decode, capacity, x.shape[1])
    mean, scale = _encode(model, images)
    level = np.clip(np.ceil(np.log2(points_per_sigma / scale.min(1))), 0, FINEST_LEVEL)
    level = level.astype(np.int64)
    windows = np.full(len(images), float(window))
    # boxes of z a window reaches out to cover, where the probe found mass (none at first)
    reach_lo, reach_hi = np.full((len(images), 2), np.inf), np.full((len(images), 2), -np.inf)
    nll, error = np.empty(len(images)), np.full(len(images), np.inf)
    todo, finest = np.arange(len(images)), 0
    try:
        probe = Probe(x, x_bias, decode)
        for _ in range(max_refinements + 1):
            stopping.check()
            finest = max(finest, int(level[todo].max()))
            h = 2.0 ** -level[todo]
            box_lo, box_hi = _box(mean[todo], windows[todo, None] * scale[todo], reach_lo[todo],
                                  reach_hi[todo])
            lo = np.floor(box_lo / h[:, None]).astype(np.int64)
            hi = np.ceil(box_hi / h[:, None]).astype(np.int64)
            if np.any(np.maximum(-lo, hi) * h[:, None] >= 2.0 ** (31 - FINEST_LEVEL)):
                raise UserInputError("a posterior window reaches beyond |z| = 2048, outside the "
                                     "lattices' range: is the encoder's scale finite?")
            sums = window_log_sums(x, x_bias, todo, level[todo], lo, hi, cache, image_chunk)
            log_h, log_2h = sums[:, 0] + 2 * np.log(h), sums[:, 1] + 2 * np.log(2 * h)
            edge = np.exp(sums[:, 2] - sums[:, 0])  # the fraction of the mass on the window's edge
            far_log, far_lo, far_hi = probe.outside(todo, level[todo], lo, hi)
            far = np.exp(far_log - log_h)  # the probe's mass outside the window, relative to it
            quadrature_error = np.abs(log_h - log_2h)
            nll[todo] = -log_h
            found = quadrature_error + edge + np.log1p(far)
            error[todo] = np.where(np.isnan(found), np.inf, found)  # unknown: unbounded
            coarse, truncated = quadrature_error > tolerance / 2, edge > tolerance / 2
            missed = far > tolerance / 2
            # widen first: a truncated sum's quadrature error is not yet meaningful. Where the
            # probe found the mass that lies beyond, reaching out to it is enough: doubling the
            # window around q as well cost 15-20% more time for the same means.
            finer = level[todo] + (coarse & ~truncated & ~missed)
            wider = windows[todo] * np.where(truncated & ~missed, 2.0, 1.0)
            # reach out to where the probe found mass, with a window's margin around it
            half_width = wider[:, None] * scale[todo]
            new_lo = np.where(missed[:, None], np.minimum(reach_lo[todo], far_lo - half_width),
                              reach_lo[todo])
            new_hi = np.where(missed[:, None], np.maximum(reach_hi[todo], far_hi + half_width),
                              reach_hi[todo])
            # Posteriors far wider than q in one direction would need millions of points at the
            # resolution q's narrowest scale asks for: those keep their (reported) error.
            next_lo, next_hi = _box(mean[todo], half_width, new_lo, new_hi)
            points = np.prod((next_hi - next_lo) * 2.0 ** finer[:, None] + 2, axis=1)
            affordable = (points <= max_points_per_image) & (finer <= FINEST_LEVEL)
            moved = todo[affordable]
            level[moved], windows[moved] = finer[affordable], wider[affordable]
            reach_lo[moved], reach_hi[moved] = new_lo[affordable], new_hi[affordable]
            todo = todo[(coarse | truncated | missed) & affordable]
            if not len(todo):
                break
    finally:
        cache.release()  # its memory goes to the next model's cache
    method = (f"trapezoid-rule quadrature over z on lattices of spacing 2^-k (finest "
              f"2^-{finest}), per image h <= sigma_min/{points_per_sigma:g} over mu ± "
              f"{window:g}·sigma of q(z|x) (widened where its outer band held mass); error = "
              f"|log S_h - log S_2h| + outer-band mass fraction + log(1 + mass outside the window "
              f"on a 1/{2**PROBE_LEVEL} probe lattice over |z| <= {PROBE_BOX:g} / mass inside); windows extended "
              f"to that mass, refined up to {max_refinements} "
              f"times towards {tolerance:g} nats")
    return {"per_image": nll, "error": error, "mean": float(nll.mean()),
            "mean_error": float(error.mean()), "method": method}
