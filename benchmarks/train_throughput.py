"""Training and evaluation speed against this machine's arithmetic limit, in ONE process, so the
ratios are meaningful on a noisy, shared machine.

Prints, in order:
  (a) roof: GFLOP/s of the MLP step's own matrix products (batch 64, forward and backward, the
      same shapes, in one XLA-compiled loop): what a step could reach if it were only products
      (timed in turns with (b), so that the fraction compares like with like); and a chain of
      dependent 64x784 @ 784x784 products (XLA, oneDNN, oneDNN in bf16), each feeding the next,
      so that no compiler can skip or slice one (docs/performance.md);
  (b) single-model MLP training img/s, fast step (what ``training.fit`` runs) and the reference
      step (``Trainer.run_steps``), and the fraction of the roof the fast step reaches;
  (c) aggregate img/s of the default run's models (3 seeds x 2 estimators) trained the way the
      pipeline trains them: one ``fit``-style chunk loop per model on a pool of 2 threads;
  (d) conv img/s; (e) IWAE cost: seconds per 1,000 importance samples per test image (and the
      K=5000 evaluation of the 10,000 test images it implies); (f) the seed notebook's loop
      (``tf.function`` gradients + eager ``apply_gradients``, tfp.layers), as the baseline.
The last line is one JSON object with those figures. Rates are the best of several timed
rounds (other processes share the cores; the best round is the least disturbed one).
Run: ``make benchmark`` or ``.venv/bin/python benchmarks/train_throughput.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
import tf_keras as keras  # noqa: E402

from vae_model import training  # noqa: E402
from vae_model.evaluation import heldout as evaluation  # noqa: E402
from vae_model.model import data  # noqa: E402
from vae_model.model.config import ModelConfig  # noqa: E402
from vae_model.model.networks import ARCHITECTURES, VAE  # noqa: E402

tfd, tfpl = tfp.distributions, tfp.layers
BATCH = 64
DEFAULT_RUN = [ModelConfig(estimator=e, seed=s) for s in (0, 1, 2)
               for e in ("analytic", "monte_carlo")]


def step_products(config: ModelConfig) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matrix product in one training step of the MLP at batch 64: per
    layer the forward product, the weight gradient, and the input gradient (none for the first
    encoder layer, whose input is the data)."""
    trainer = training.Trainer(config)
    kernels = [tuple(v.shape) for v in trainer.model.variables_to_train if v.shape.rank == 2]
    products = []
    for i, (k, n) in enumerate(kernels):
        products += [(BATCH, k, n), (k, BATCH, n)] + ([(BATCH, n, k)] if i else [])
    return products


def flops(products) -> int:
    return sum(2 * m * k * n for m, k, n in products)


def seconds(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def best_rate(run, work: float, rounds: int) -> float:
    """``work`` per second of the fastest of ``rounds`` calls of ``run`` (after a warm-up)."""
    run()
    return work / min(seconds(run) for _ in range(rounds))


def roof_probe(products, repeats: int = 200):
    """The step's products alone, ``repeats`` times in one XLA loop (an operand shifted by the
    loop counter, so that XLA cannot hoist the products out of the loop, and every product
    summed whole, so that it cannot compute just the part a slice would read); returns the
    probe and its GFLOP."""
    operands = [(tf.random.normal([m, k]), tf.random.normal([k, n]) / k) for m, k, n in products]

    @tf.function(jit_compile=True)
    def products_only():
        total = tf.zeros([])
        for i in tf.range(repeats):
            shift = tf.cast(i, tf.float32) * 1e-30
            for a, b in operands:
                total += tf.reduce_sum(tf.matmul(a + shift, b))
        return total

    return (lambda: products_only().numpy()), flops(products) * repeats / 1e9


def square_chain(dtype, xla: bool, repeats: int = 400):
    """64x784 @ 784x784 products, each feeding the next (so none can be skipped or sliced, as
    a probe of independent products can be by XLA), XLA-compiled or as a TensorFlow
    graph (oneDNN kernels), in ``dtype``; returns the probe and its GFLOP."""
    weights = tf.cast(tf.random.normal([784, 784]) / 28.0, dtype)
    start = tf.cast(tf.random.normal([BATCH, 784]), dtype)
    half = tf.cast(0.5, dtype)

    @tf.function(jit_compile=xla)
    def chain():
        return tf.while_loop(lambda i, x: i < repeats,
                             lambda i, x: (i + 1, tf.matmul(x, weights) * half), (0, start))[1]

    return (lambda: chain().numpy()), 2 * BATCH * 784 * 784 * repeats / 1e9


SQUARE_CHAINS = {"square_chain_xla_gflops": (tf.float32, True),
                 "square_chain_onednn_gflops": (tf.float32, False),
                 "square_chain_onednn_bf16_gflops": (tf.bfloat16, False)}


def chunk_loop(runner, images: np.ndarray, config: ModelConfig, steps: int, chunk: int):
    """Like ``training.fit``'s epoch loop: shuffled uint8 batches gathered per chunk."""
    order, seeds = training.epoch_plan(len(images), config.batch_size, config.seed, 1)

    def run():
        for start in range(0, steps, chunk):
            picks = slice(start % (len(order) - chunk), None)
            runner(images[order[picks][:chunk]], seeds[picks][:chunk]).numpy()
    return run


def trained_rates(images, architecture: str, steps: int, chunk: int, rounds: int,
                  probes: dict | None = None) -> dict:
    """img/s of the chunk runner ``fit`` uses and of the reference chunk, and work/s of any
    other ``probes`` ({name: (run, work)}), timed in turns so that all see the same load."""
    config = ModelConfig(architecture=architecture, batch_size=BATCH)
    trainer = training.Trainer(config)
    runners = {"fit": trainer.chunk_runner(), "reference": trainer.run_steps}
    timed = {name: (chunk_loop(r, images, config, steps, chunk), steps * BATCH)
             for name, r in runners.items()}
    timed.update(probes or {})
    for run, _ in timed.values():
        run()  # compile
    best = {name: 0.0 for name in timed}
    for _ in range(rounds):
        for name, (run, work) in timed.items():
            best[name] = max(best[name], work / seconds(run))
    return best


def aggregate_rate(images, steps: int, chunk: int, rounds: int, threads: int = 2) -> float:
    """All models of the default run, each its own chunk loop, on a pool of ``threads`` threads
    (the pipeline's ThreadPoolTaskRunner(max_workers=2)): total img/s."""
    loops = []
    for config in DEFAULT_RUN:
        keras.utils.set_random_seed(config.seed)
        trainer = training.Trainer(config)
        loops.append(chunk_loop(trainer.chunk_runner(), images, config, steps, chunk))

    def run_all():
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda loop: loop(), loops))
    return best_rate(run_all, len(loops) * steps * BATCH, rounds)


def iwae_seconds_per_1000(test_images, n_images: int, k: int, rounds: int) -> float:
    """Seconds per 1,000 importance samples per test image (weights do not change the cost)."""
    model = VAE(ModelConfig())
    subset = test_images[:n_images]
    per_second = best_rate(lambda: evaluation.iwae_nll(model, subset, k), n_images * k, rounds)
    return 1000.0 / per_second


def seed_style_images_per_second(images: np.ndarray, architecture: str, steps: int) -> float:
    latent = 2
    encoder, decoder = ARCHITECTURES[architecture](latent)
    encoder = keras.Sequential([encoder, tfpl.DistributionLambda(
        lambda t: tfd.MultivariateNormalDiag(loc=t[..., :latent],
                                             scale_diag=tf.math.exp(t[..., latent:])))])
    decoder = keras.Sequential([decoder, keras.layers.Flatten(),
                                tfpl.IndependentBernoulli((28, 28))])
    prior = tfd.MultivariateNormalDiag(loc=tf.zeros(latent))
    decoder(encoder(data.to_float(images[:1])))  # build both
    variables = encoder.trainable_variables + decoder.trainable_variables
    optimizer = keras.optimizers.Adam()

    @tf.function
    def get_loss_and_grads(x):
        with tf.GradientTape() as tape:
            q = encoder(x)
            loss = tf.reduce_mean(tfd.kl_divergence(q, prior) - decoder(q.sample()).log_prob(x))
        return loss, tape.gradient(loss, variables)

    batches = tf.data.Dataset.from_tensor_slices(data.to_float(images)).batch(BATCH)
    warmup, done, started = 20, 0, None
    for i, batch in enumerate(batches.repeat()):
        if i == warmup:
            started = time.perf_counter()
        loss, grads = get_loss_and_grads(batch)
        optimizer.apply_gradients(zip(grads, variables))
        if i >= warmup:
            done += 1
        if done == steps:
            break
    return done * BATCH / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per figure")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    steps, chunk = (500, 250) if args.quick else (1000, 250)
    dataset = data.load()
    images = dataset.train_images
    print(f"TensorFlow {tf.__version__}, TFP {tfp.__version__}, {os.cpu_count()} CPUs, "
          f"batch {BATCH}, best of {rounds} rounds")

    products = step_products(ModelConfig())
    step_mflop = flops(products) / 1e6
    probes = {"roof": roof_probe(products)}
    probes.update({name: square_chain(*how) for name, how in SQUARE_CHAINS.items()})
    mlp = trained_rates(images, "mlp", steps, chunk, rounds, probes)
    roof = mlp["roof"]
    print(f"(a) roof: the MLP step's {len(products)} matrix products ({step_mflop:.0f} MFLOP "
          f"per step of {BATCH}) alone run at {roof:,.0f} GFLOP/s; a chain of dependent "
          f"64x784 @ 784x784 products: XLA {mlp['square_chain_xla_gflops']:,.0f}, oneDNN "
          f"{mlp['square_chain_onednn_gflops']:,.0f}, oneDNN bf16 "
          f"{mlp['square_chain_onednn_bf16_gflops']:,.0f} GFLOP/s. Products alone at 85,000 "
          f"img/s need {85_000 * step_mflop / BATCH / 1e3:,.0f} GFLOP/s, at 130,000 "
          f"{130_000 * step_mflop / BATCH / 1e3:,.0f}")
    fraction = mlp["fit"] * step_mflop / BATCH / 1e3 / roof
    print(f"(b) mlp, one model: fast step {mlp['fit']:,.0f} img/s, reference step "
          f"{mlp['reference']:,.0f} img/s ({mlp['fit'] / mlp['reference']:.2f}x); "
          f"{mlp['fit'] * step_mflop / BATCH / 1e3:,.0f} GFLOP/s = {fraction:.0%} of the roof")

    aggregate = aggregate_rate(images, steps, chunk, max(1, rounds // 2))
    print(f"(c) default run's {len(DEFAULT_RUN)} models on 2 threads: {aggregate:,.0f} img/s "
          f"in total ({aggregate / mlp['fit']:.2f}x one model)")

    conv = trained_rates(images, "conv", steps // 2, chunk, max(1, rounds // 2))
    print(f"(d) conv, one model: {conv['fit']:,.0f} img/s")

    iwae = iwae_seconds_per_1000(dataset.test_images, 500, 1000, max(1, rounds // 2))
    print(f"(e) IWAE: {iwae * 1e3:.2f} ms per 1,000 samples per test image, i.e. "
          f"K=5000 on the 10,000 test images in {iwae * 5 * 10_000:,.0f} s per model")

    seed_steps = 300 if args.quick else 600
    seed_mlp = seed_style_images_per_second(images, "mlp", seed_steps)
    seed_conv = seed_style_images_per_second(images, "conv", seed_steps // 2)
    print(f"(f) seed-style loop: mlp {seed_mlp:,.0f} img/s, conv {seed_conv:,.0f} img/s; "
          f"speed-up over it: mlp {mlp['fit'] / seed_mlp:.1f}x, conv {conv['fit'] / seed_conv:.1f}x")
    print(json.dumps({
        "mlp_img_per_s": round(mlp["fit"]), "mlp_reference_img_per_s": round(mlp["reference"]),
        "roof_gflops": round(roof, 1), "mlp_roof_fraction": round(fraction, 3),
        "aggregate_img_per_s": round(aggregate), "conv_img_per_s": round(conv["fit"]),
        "iwae_seconds_per_1000": round(iwae, 6), "seed_loop_img_per_s": round(seed_mlp),
        "seed_loop_conv_img_per_s": round(seed_conv),
        **{name: round(mlp[name], 1) for name in SQUARE_CHAINS}}))


if __name__ == "__main__":
    main()
