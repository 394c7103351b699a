"""Prefect tasks: thin wrappers over :mod:`vae_model.stages` that add caching, retries, names,
logging, progress and artifacts. They take and return small values and paths."""

from tasks.stages import (evaluate_model, plan_seeds, publish_results, render_figures, train_model,
                          verify_data, write_report)

__all__ = ["verify_data", "train_model", "evaluate_model", "plan_seeds", "render_figures",
           "write_report", "publish_results"]
