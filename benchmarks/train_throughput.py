"""Training throughput (images/s) of this project vs the seed notebook's loop, measured in ONE
process on the same data, so the ratio is meaningful on a noisy machine.

The seed loop is the notebook's: a Keras Sequential ending in tfp.layers, a ``@tf.function``
computing loss and gradients, and an eager ``optimizer.apply_gradients`` per batch of 64.
The project's is :class:`vae_model.training.Trainer`: shuffled batches gathered on the host,
many steps per XLA-compiled call. Run: ``make benchmark`` or
``.venv/bin/python benchmarks/train_throughput.py [--architectures mlp conv]``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
import tf_keras as keras  # noqa: E402

from vae_model import data, training  # noqa: E402
from vae_model.config import ModelConfig  # noqa: E402
from vae_model.networks import ARCHITECTURES  # noqa: E402

tfd, tfpl = tfp.distributions, tfp.layers
BATCH = 64


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


def project_images_per_second(images: np.ndarray, architecture: str, steps: int,
                              steps_per_chunk: int) -> float:
    config = ModelConfig(architecture=architecture, batch_size=BATCH)
    trainer = training.Trainer(config)
    order, seeds = training.epoch_plan(len(images), BATCH, seed=0, epoch=1)
    trainer.run_steps(images[order[:steps_per_chunk]], seeds[:steps_per_chunk])  # compile
    done, started = 0, time.perf_counter()
    while done < steps:
        chunk = slice(done % (len(order) - steps_per_chunk), None)
        picks = order[chunk][:steps_per_chunk]
        trainer.run_steps(images[picks], seeds[chunk][:steps_per_chunk]).numpy()
        done += steps_per_chunk
    return done * BATCH / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architectures", nargs="+", default=["mlp", "conv"],
                        choices=list(ARCHITECTURES))
    parser.add_argument("--seed-steps", type=int, default=600, help="seed-loop steps timed")
    parser.add_argument("--steps", type=int, default=2000, help="project steps timed")
    parser.add_argument("--steps-per-chunk", type=int, default=250)
    args = parser.parse_args()
    images = data.load().train_images
    print(f"TensorFlow {tf.__version__}, TFP {tfp.__version__}, {os.cpu_count()} CPUs, "
          f"batch {BATCH}")
    results = []
    for architecture in args.architectures:
        seed = seed_style_images_per_second(images, architecture, args.seed_steps)
        ours = project_images_per_second(images, architecture, args.steps, args.steps_per_chunk)
        print(f"{architecture}: seed-style loop {seed:,.0f} img/s, project {ours:,.0f} img/s")
        results.append((architecture, ours / seed))
    for architecture, ratio in results:
        print(f"speed-up over the seed-style loop ({architecture}): {ratio:.1f}x")


if __name__ == "__main__":
    main()
