"""``vae-pipeline``: run the pipeline, rerun one stage, serve it on a schedule, or sweep a grid."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's temporary server gets 20 s to start by default; on a busy 2-core machine that is
# not always enough, and the failure would be a traceback.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from flows.cli import signals  # noqa: E402
from flows.cli.parser import build_parser  # noqa: E402


def pipeline_parameters(args) -> dict:
    """The flow's parameters, checked with the same rules the pipeline applies (the same grid
    builder), so a mistake is one line here rather than a failed flow run."""
    from flows.grid import model_grid
    from flows.parameters import check
    from vae_model.evaluation import plan
    from vae_model.model import data
    from vae_model.runs import store
    from vae_model.runs.directory import ensure_writable, recorded_plan, run_dir

    names = ("estimators", "seeds", "architectures", "likelihoods", "latent_sizes", "epochs",
             "batch_size", "learning_rate", "iwae_k", "gradient_draws", "train_limit",
             "all_model_figures", "data_dir", "artifacts_dir", "run_id", "equivalence_margin",
             "until_decided", "max_seeds")
    parameters = {n: getattr(args, n) for n in names if hasattr(args, n)}
    model_grid(parameters, data.CANONICAL["train_images"].count)
    check(parameters)
    plan.check(parameters)
    ensure_writable(store.location(args.artifacts_dir))  # a store that refuses us: one line
    if getattr(args, "run_id", None):
        plan.check(parameters, recorded_plan(run_dir(args.artifacts_dir, args.run_id)))
    if args.data_dir:  # the files' presence now; their checksums in the verify-data stage
        data.locate(args.data_dir, download=False)
    return parameters


def main(argv: list[str] | None = None) -> int:
    with signals.sigterm_as_interrupt(process_ends=argv is None):
        return _main(argv)


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
            from vae_model.runs.directory import load_manifest, run_dir
            load_manifest(run_dir(args.artifacts_dir, args.run_id))
        with contextlib.ExitStack() as cleanup:  # the temporary server stops before a message
            server = before_flow(args, cleanup)  # a temporary Prefect server, if one is needed
            run_verb(args, parameters, server)
    except KeyboardInterrupt as err:
        return signals.interrupted(err)
    except Exception as err:  # a user error (TrainingDiverged too) wherever it was found
        if signals.reworded_interrupt(err):
            return signals.interrupted(KeyboardInterrupt())
        from flows.cli.console import fixable
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
    # tf_keras, 2-3 s: while the server starts
    from vae_model import training
    from vae_model.model import data

    n_train = data.CANONICAL["train_images"].count
    first = model_grid(parameters, n_train)[0]

    def compile_first():
        with contextlib.suppress(Exception):  # a head start only: the first task compiles it
            training.compile_ahead(first, n_train)

    threading.Thread(target=compile_first, name="compile-ahead").start()


def before_flow(args, cleanup: contextlib.ExitStack):
    """The checks that need no flow run: another process writing this run (the flow takes
    the lock itself; this only fails sooner), and the Prefect API to be used: if none is set,
    a temporary server is started and returned (stopped by ``cleanup``); if one is set, it is
    watched while the command runs. Then user errors raised inside the flow reach the terminal
    as one line, their tracebacks only the UI."""
    from flows.cli import api, console
    from vae_model.runs import lock
    from vae_model.runs.directory import run_dir

    if getattr(args, "run_id", None):
        lock.check_free(run_dir(args.artifacts_dir, args.run_id))
    api.check_api()
    server, (url, _) = None, api.api_url()
    if args.verb == "sweep":
        api.check_reachable_by_workers(args.dask_address, url)
    if url is None:
        from flows.cli import temporary_server
        server = cleanup.enter_context(temporary_server.serving())  # restarted if it dies
    elif args.verb != "serve":  # Prefect's runner rides out a server's absence between runs
        api.watch_api(url, api.api_grace_seconds())
    console.quiet_user_tracebacks()
    return server


def registry_verb(args) -> int:
    from flows.cli import console
    from vae_model import UserInputError
    from vae_model.runs import registry, store

    try:
        store.check(store.location(args.artifacts_dir))
    except UserInputError as err:
        print(f"vae-pipeline: error: {err}", file=sys.stderr)
        return 2

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
