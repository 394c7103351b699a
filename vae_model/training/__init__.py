"""Compiled, chunked, resumable training (:mod:`.loop`), with the fast step of the MLP with
Bernoulli pixels beside the reference step (:mod:`.fast_step`)."""

from vae_model.training.loop import (STATE_FILE, Progress, Trainer, TrainingDiverged, TrainResult,
                                     compile_ahead, epoch_plan, fit, load_model)

__all__ = ["STATE_FILE", "Progress", "Trainer", "TrainingDiverged", "TrainResult",
           "compile_ahead", "epoch_plan", "fit", "load_model"]
