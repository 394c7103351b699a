"""The command line's verbs and options: the flow's parameters as flags, plus each verb's own."""

from __future__ import annotations

import argparse

from vae_model.evaluation import plan
from vae_model.evaluation.decision import DEFAULT_MARGIN
from vae_model.model.config import ARCHITECTURES, ESTIMATORS, LIKELIHOODS, ModelConfig

DEFAULT_CRON = "0 3 * * *"
# Fixed, so that scheduled runs of one configuration are comparable night to night: a change
# beyond the spread over seeds is a regression, not seed noise.
DEFAULT_SEEDS = (0, 1, 2)
MAX_RANGE = 10_000  # seeds in one --seeds range


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vae-pipeline", description="Train and compare VAEs on Fashion-MNIST under the "
        "analytic and Monte-Carlo KL estimators, orchestrated by Prefect.")
    verbs = parser.add_subparsers(dest="verb", required=True,
                                  metavar="{run,rerun,serve,sweep,runs,prune}")

    run = verbs.add_parser("run", help="run the whole pipeline once",
                           description="Run the whole pipeline once: verify data, train one "
                           "model per estimator and seed, evaluate, compare the estimators, "
                           "draw figures, write the report.")
    _add_pipeline_options(run)
    run.add_argument("--concurrency", type=int, default=2,
                     help="models trained at once, in threads (default: %(default)s; 1 trains "
                     "one after the other)")

    rerun = verbs.add_parser("rerun", help="rerun one stage of an existing run",
                             description="Rerun one stage of an existing run directory as its "
                             "own Prefect flow run, leaving the other stages' outputs alone.")
    rerun.add_argument("stage", choices=("evaluate", "figures", "report"))
    rerun.add_argument("--run-id", required=True, help="the run directory's name")
    rerun.add_argument("--artifacts-dir", default="artifacts", help="default: %(default)s")
    rerun.add_argument("--iwae-k", type=int, help="evaluate: importance samples per image")
    rerun.add_argument("--gradient-draws", type=int, help="evaluate: draws for the variance")
    rerun.add_argument("--force", action="store_true", help="ignore the stage's cached result")

    serve = verbs.add_parser("serve", help="serve the pipeline as a scheduled deployment",
                             description="Serve the pipeline as a deployment with a cron "
                             "schedule; needs a Prefect server (PREFECT_API_URL).")
    serve.add_argument("--name", default="nightly", help="deployment name (default: %(default)s)")
    serve.add_argument("--cron", default=DEFAULT_CRON, help="schedule (default: '%(default)s')")
    _add_pipeline_options(serve, with_run_id=False)

    sweep = verbs.add_parser("sweep", help="train and compare a grid of models on Dask",
                             description="The pipeline on a Dask cluster, for larger grids: "
                             "every combination of the listed estimators, seeds, latent sizes, "
                             "architectures and likelihoods, compared per configuration in one "
                             "report.")
    _add_pipeline_options(sweep)
    sweep.add_argument("--dask-address", help="scheduler to use, e.g. tcp://10.0.0.5:8786 "
                       "(default: a local cluster)")
    sweep.add_argument("--dask-workers", type=int, default=2,
                       help="local cluster's worker processes (default: %(default)s)")
    runs = verbs.add_parser("runs", help="list the runs: status, date, headline numbers",
                            description="List the runs under the artifacts directory, oldest "
                            "first: status (complete, failed, running, incomplete), date, "
                            "held-out -ELBO per estimator, size.")
    runs.add_argument("--artifacts-dir", default="artifacts", help="default: %(default)s")
    prune = verbs.add_parser("prune", help="remove all but the newest runs",
                             description="Remove all but the N newest runs; never the one "
                             "'latest' points at, nor one a process is writing.")
    prune.add_argument("--keep", type=int, required=True, help="runs to keep")
    prune.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    prune.add_argument("--artifacts-dir", default="artifacts", help="default: %(default)s")
    return parser


def _seed_tokens(text: str) -> list[int]:
    """One --seeds token: a seed ("7") or an upward range of seeds ("0-9")."""
    first, dash, last = text.partition("-") if not text.startswith("-") else (text, "", "")
    try:
        first, last = int(first), int(last) if dash else int(first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed or a range of seeds "
                                         "such as 0-9") from None
    if not 0 <= last - first < MAX_RANGE:
        raise argparse.ArgumentTypeError(f"{text!r}: a range of seeds runs upward, at most "
                                         f"{MAX_RANGE} seeds")
    return list(range(first, last + 1))


class _Seeds(argparse.Action):
    """--seeds 0-9 12: the seeds of every token, in order."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [seed for token in values for seed in token])


def _add_pipeline_options(parser, with_run_id: bool = True) -> None:
    """The flow's parameters as options. Each axis of the model grid takes one value or more
    (the singular spelling is accepted too); every combination is one model."""
    defaults = ModelConfig()
    parser.add_argument("--estimators", "--estimator", nargs="+", choices=ESTIMATORS,
                        default=list(ESTIMATORS), metavar="ESTIMATOR",
                        help=f"KL estimators: {', '.join(ESTIMATORS)} (default: both)")
    parser.add_argument("--seeds", "--seed", nargs="+", type=_seed_tokens, action=_Seeds,
                        default=list(DEFAULT_SEEDS), metavar="SEED",
                        help="seeds or ranges of seeds (0-9), one model per estimator each; the "
                        "estimators are compared seed by seed; with --until-decided, the "
                        "plan's pilot (default: %(default)s)")
    parser.add_argument("--architectures", "--architecture", nargs="+", choices=ARCHITECTURES,
                        default=[defaults.architecture], metavar="ARCHITECTURE",
                        help="mlp: the seed tutorial's MLP; conv: its overview's conv net")
    parser.add_argument("--likelihoods", "--likelihood", nargs="+", choices=LIKELIHOODS,
                        default=[defaults.likelihood], metavar="LIKELIHOOD",
                        help=f"pixel likelihoods p(x|z): {', '.join(LIKELIHOODS)} "
                        "(default: %(default)s)")
    parser.add_argument("--latent-sizes", "--latent-size", nargs="+", type=int,
                        default=[defaults.latent_size], metavar="SIZE",
                        help="latent dimensions (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--iwae-k", type=int, default=100,
                        help="importance samples per test image for the IWAE bound (default: "
                        "%(default)s; 5000 for paper-grade numbers)")
    parser.add_argument("--gradient-draws", type=int, default=100,
                        help="draws of z for the gradient variance (default: %(default)s)")
    parser.add_argument("--train-limit", type=int, help="use only the first N training images")
    parser.add_argument("--equivalence-margin", type=float, default=DEFAULT_MARGIN, metavar="NATS",
                        help="differences within ±NATS per image count as equivalent (TOST at "
                        "α = 0.05; default: %(default)s)")
    parser.add_argument("--until-decided", action="store_true",
                        help="treat --seeds as a pilot and add, in the same run, the seeds "
                        "whose paired interval is narrow enough to decide better or equivalent "
                        "(Stein's two-stage plan, error rates stated in docs/method.md); "
                        f"a pilot of {plan.RECOMMENDED_PILOT} seeds costs least")
    parser.add_argument("--max-seeds", type=int, default=plan.DEFAULT_MAX_SEEDS, metavar="N",
                        help="with --until-decided: at most N seeds in all per configuration; "
                        "a plan that needs more trains N and says it was capped (default: "
                        "%(default)s)")
    parser.add_argument("--all-model-figures", action="store_true",
                        help="draw the per-model image figures for every model, not only for "
                        "the lowest seed of each configuration and estimator")
    parser.add_argument("--data-dir", help="directory with the four Fashion-MNIST IDX files "
                        "(default: $FASHION_MNIST_DIR, the Keras cache, Debian's package)")
    parser.add_argument("--artifacts-dir", default="artifacts", help="default: %(default)s")
    if with_run_id:
        parser.add_argument("--run-id", help="run directory name (default: time and flow-run "
                            "name; reuse one to resume or to hit the cache)")
