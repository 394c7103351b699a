"""``vae-pipeline``: run the pipeline, rerun one stage, serve it on a schedule, or sweep a grid."""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import signal
import sys
import threading
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's temporary server gets 20 s to start by default; on a busy 2-core machine that is
# not always enough, and the failure would be a traceback.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from vae_model.config import ARCHITECTURES, ESTIMATORS, LIKELIHOODS, ModelConfig  # noqa: E402

DEFAULT_CRON = "0 3 * * *"
# Fixed, so that scheduled runs of one configuration are comparable night to night: a change
# beyond the spread over seeds is a regression, not seed noise.
DEFAULT_SEEDS = (0, 1, 2)


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


def _add_pipeline_options(parser, with_run_id: bool = True) -> None:
    """The flow's parameters as options. Each axis of the model grid takes one value or more
    (the singular spelling is accepted too); every combination is one model."""
    defaults = ModelConfig()
    parser.add_argument("--estimators", "--estimator", nargs="+", choices=ESTIMATORS,
                        default=list(ESTIMATORS), metavar="ESTIMATOR",
                        help=f"KL estimators: {', '.join(ESTIMATORS)} (default: both)")
    parser.add_argument("--seeds", "--seed", nargs="+", type=int, default=list(DEFAULT_SEEDS),
                        metavar="SEED",
                        help="seeds, one model per estimator each; the estimators are compared "
                        "seed by seed (default: %(default)s)")
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
    parser.add_argument("--all-model-figures", action="store_true",
                        help="draw the per-model image figures for every model, not only for "
                        "the lowest seed of each configuration and estimator")
    parser.add_argument("--data-dir", help="directory with the four Fashion-MNIST IDX files "
                        "(default: $FASHION_MNIST_DIR, the Keras cache, Debian's package)")
    parser.add_argument("--artifacts-dir", default="artifacts", help="default: %(default)s")
    if with_run_id:
        parser.add_argument("--run-id", help="run directory name (default: time and flow-run "
                            "name; reuse one to resume or to hit the cache)")


def pipeline_parameters(args) -> dict:
    """The flow's parameters, checked with the same rules the pipeline applies (the same grid
    builder), so a mistake is one line here rather than a failed flow run."""
    from flows.grid import model_grid
    from vae_model import UserInputError, data
    from vae_model.run import ensure_writable, run_dir

    names = ("estimators", "seeds", "architectures", "likelihoods", "latent_sizes", "epochs",
             "batch_size", "learning_rate", "iwae_k", "gradient_draws", "train_limit",
             "all_model_figures", "data_dir", "artifacts_dir", "run_id")
    parameters = {n: getattr(args, n) for n in names if hasattr(args, n)}
    negative = [s for s in args.seeds if s < 0]
    if negative:
        raise UserInputError(f"seeds must be whole numbers >= 0, got {negative[0]}")
    model_grid(parameters, data.CANONICAL["train_images"].count)
    for name in ("iwae_k", "gradient_draws"):
        least = 2 if name == "gradient_draws" else 1
        if getattr(args, name) < least:
            flag = name.replace("_", "-")
            raise UserInputError(f"--{flag} must be at least {least}, got {getattr(args, name)}")
    if getattr(args, "run_id", None):
        run_dir(args.artifacts_dir, args.run_id)
    ensure_writable(Path(args.artifacts_dir).expanduser())
    if args.data_dir:  # the files' presence now; their checksums in the verify-data stage
        data.locate(args.data_dir, download=False)
    return parameters


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler stopping the run), handled like Ctrl-C: a line, exit hooks run."""


def _terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    # Python's default SIGTERM exits at once, skipping exit hooks (Prefect's server stop).
    # During a flow run Prefect's own handler takes over; after recording the crash it
    # re-sends the signal to this one.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if argv is None:  # the command line: the process ends next
            # Python's last garbage collections walk every object TensorFlow and Prefect left
            # (2.3-2.6 s after the report here, a core busy, nothing to free that matters);
            # frozen objects are skipped. Exit hooks and the deallocation of the rest still run.
            gc.freeze()


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb in ("runs", "prune"):
        return registry_verb(args)  # reads files only: no TensorFlow, no Prefect
    from vae_model import UserInputError

    try:
        # Validate before importing Prefect: a mistake costs a second, not a server start.
        parameters = pipeline_parameters(args) if args.verb != "rerun" else None
        if args.verb == "run" and args.concurrency <= 0:
            raise UserInputError(f"--concurrency must be > 0, got {args.concurrency}")
        if args.verb == "sweep" and args.dask_workers <= 0:
            raise UserInputError(f"--dask-workers must be > 0, got {args.dask_workers}")
        if args.verb == "rerun":
            from vae_model.run import load_manifest, run_dir
            load_manifest(run_dir(args.artifacts_dir, args.run_id))
        with contextlib.ExitStack() as cleanup:  # the temporary server stops before a message
            server = before_flow(args, cleanup)  # a temporary Prefect server, if one is needed
            run_verb(args, parameters, server)
    except KeyboardInterrupt as err:
        return _interrupted(err)
    except Exception as err:  # a user error (TrainingDiverged too) wherever it was found
        if _reworded_interrupt(err):
            return _interrupted(KeyboardInterrupt())
        from flows.console import fixable
        found = fixable(err)
        if found is not None:
            print(f"vae-pipeline: error: {str(found).strip().splitlines()[0]}", file=sys.stderr)
            return 2 if isinstance(found, UserInputError) else 1
        if "Failed to reach API" in str(err):  # the server went away after before_flow
            print(f"vae-pipeline: error: {str(err).splitlines()[0]}: is the Prefect server "
                  "still running? (or unset PREFECT_API_URL)", file=sys.stderr)
            return 1
        raise
    return 0


def run_verb(args, parameters: dict | None, server=None) -> None:
    """The flow of ``args.verb``, started once Prefect's API answers (``server``: the
    temporary one, if any, which comes up while TensorFlow is imported)."""
    if args.verb == "run":
        from prefect.task_runners import ThreadPoolTaskRunner

        from flows.pipeline import vae_pipeline
        compile_ahead(parameters)
        runner = ThreadPoolTaskRunner(max_workers=args.concurrency)
        flow = functools.partial(vae_pipeline.with_options(task_runner=runner), **parameters)
    elif args.verb == "rerun":
        from flows.rerun import rerun_stage
        flow = functools.partial(rerun_stage, args.stage, args.run_id, args.artifacts_dir,
                                 args.iwae_k, args.gradient_draws, args.force)
    elif args.verb == "sweep":
        from flows.sweep import dask_runner, vae_sweep
        runner = dask_runner(args.dask_address, args.dask_workers)
        flow = functools.partial(vae_sweep.with_options(task_runner=runner), **parameters)
    else:
        from flows.pipeline import vae_pipeline
        flow = functools.partial(vae_pipeline.serve, name=args.name, cron=args.cron,
                                 parameters=parameters)
    if server is not None:
        server.wait_until_ready()
    report = flow()
    if args.verb != "serve":
        print(f"report: {report}")


def compile_ahead(parameters: dict) -> None:
    """XLA compiles the first model's training step (~2.5 s of one core) in the background
    while the flow starts: until the first task trains, a core is idle. Not a daemon thread:
    a process that exits (Ctrl-C) while TensorFlow compiles in a daemon thread aborts
    (SIGABRT, "FATAL: exception not rethrown"), so exit waits for it."""
    from flows.grid import model_grid
    from vae_model import data, training  # tf_keras, 2-3 s: while the server starts

    n_train = data.CANONICAL["train_images"].count
    first = model_grid(parameters, n_train)[0]

    def compile_first():
        with contextlib.suppress(Exception):  # a head start only: the first task compiles it
            training.compile_ahead(first, n_train)

    threading.Thread(target=compile_first, name="compile-ahead").start()


def _interrupted(err: KeyboardInterrupt) -> int:
    how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
    print(f"vae-pipeline: {how}; rerun with the same --run-id to resume", file=sys.stderr)
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)


def _reworded_interrupt(err: Exception) -> bool:
    """A Ctrl-C that landed inside pydantic's compiled core (Prefect validates its settings
    while it is imported) comes back as a PydanticSerializationError naming it."""
    return type(err).__name__ == "PydanticSerializationError" and "KeyboardInterrupt" in str(err)


def before_flow(args, cleanup: contextlib.ExitStack):
    """The checks that need no flow run: another process writing this run (the flow takes
    the lock itself; this only fails sooner), and the Prefect API to be used: if none is set,
    a temporary server is started and returned (stopped by ``cleanup``); if one is set, it is
    watched while the command runs. Then user errors raised inside the flow reach the terminal
    as one line, their tracebacks only the UI."""
    from vae_model import lock
    from vae_model.run import run_dir

    from flows import console

    if getattr(args, "run_id", None):
        lock.check_free(run_dir(args.artifacts_dir, args.run_id))
    console.check_api()
    server, (url, _) = None, console.api_url()
    if url is None:
        from flows import temporary_server
        server = cleanup.enter_context(temporary_server.serving())  # restarted if it dies
    elif args.verb != "serve":  # Prefect's runner rides out a server's absence between runs
        console.watch_api(url, console.api_grace_seconds())
    console.quiet_user_tracebacks()
    return server


def registry_verb(args) -> int:
    from vae_model import registry

    from flows import console

    if args.verb == "prune" and args.keep < 0:
        print(f"vae-pipeline: error: --keep must be >= 0, got {args.keep}", file=sys.stderr)
        return 2
    if args.verb == "runs":
        print("\n".join(console.format_runs(registry.list_runs(args.artifacts_dir))))
        return 0
    removed = registry.prune(args.artifacts_dir, args.keep, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for run in removed:
        print(f"{verb} {run['id']} ({run['status']}, {run['bytes'] / 1e6:.1f} MB)")
    total = sum(r["bytes"] for r in removed) / 1e6
    print(f"{verb} {len(removed)} run(s), {total:.1f} MB; kept the newest {args.keep}, "
          "'latest' and any being written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
