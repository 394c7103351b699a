"""What a flow holds while it writes a run directory: the run's lock (one writer per run), and,
if the flow fails, a manifest saying so (which stage, the one-line error) instead of a
directory that says nothing.

Taken in the flow, not the CLI, so that deployment runs (a worker's subprocess) are covered
too; the CLI only checks the lock early (:func:`vae_model.runs.lock.check_free`) to fail before
Prefect starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from pathlib import Path

from prefect.exceptions import TerminationSignal

from vae_model.runs import lock, registry, stopping, store

STAGE_ATTRIBUTE = "_vae_stage"
# The runs this process is writing (path -> parameters and start, for their manifest) and those
# whose flow got through its work: for ``abandon``, called from another thread.
_writing: dict[Path, tuple[dict | None, str]] = {}
_written: list[Path] = []
_flags: dict = {}  # run path -> its stop flag on the flow's Dask cluster (None: not on Dask)
_registry_lock = threading.Lock()


def note_stage(task, task_run, state) -> None:
    """on_failure hook, declared on every pipeline task: name the failed task run on its
    exception, which is the object the flow re-raises (in threads the same one; on Dask a
    pickled copy, attributes included)."""
    err = state.result(raise_on_failure=False)
    if isinstance(err, BaseException) and not hasattr(err, STAGE_ATTRIBUTE):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(err, STAGE_ATTRIBUTE, task_run.name)


def failed_stage(err: BaseException) -> str:
    """The task run that raised ``err`` (or one it was raised from), else ``flow``."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if getattr(err, STAGE_ATTRIBUTE, None):
            return getattr(err, STAGE_ATTRIBUTE)
        err = err.__cause__ or err.__context__
    return "flow"


def _stop_flag(run_path):
    """The run's stop flag on the Dask cluster the flow's tasks run on (a ``distributed.Event``
    named after the run), or None where they do not run on Dask."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = getattr(context, "task_runner", None) if context else None
    if type(runner).__name__ != "DaskTaskRunner":
        return None
    with contextlib.suppress(Exception):  # not started, or the scheduler is gone
        from distributed import Event

        return Event(stop_flag_name(run_path), client=runner.client)
    return None


def stop_flag_name(run_path) -> str:
    import hashlib

    return "vae-stop-" + hashlib.sha256(str(run_path).encode()).hexdigest()[:16]


@contextlib.contextmanager
def heeding_stop(run_path):
    """For a stage running on a Dask worker: stop at its next unit of work when the flow that
    wrote ``run_path`` was interrupted on its own machine."""
    try:
        from distributed import Event, get_worker

        get_worker()
    except (ImportError, ValueError):  # not on a Dask worker: the local request reaches it
        yield
        return
    flag = Event(stop_flag_name(run_path))
    with stopping.watching(flag.is_set):
        yield


def _tell_cluster(run_path, stop: bool) -> None:
    """Raise (or, at the start of a run, lower) the run's flag on its Dask cluster, if any."""
    with _registry_lock:
        if run_path not in _flags:
            _flags[run_path] = _stop_flag(run_path)
        flag = _flags[run_path]
    if flag is not None:
        with contextlib.suppress(Exception):  # a scheduler that is gone has no stages to stop
            flag.set() if stop else flag.clear()


@contextlib.contextmanager
def writing(run_path: str | Path, parameters: dict | None = None):
    """Hold ``run_path``'s lock for the block (raises :class:`vae_model.runs.lock.RunLocked` at once
    if another process holds it, having written nothing); if the block fails, record the
    failure in the run's manifest before re-raising. An interruption (Ctrl-C, or SIGTERM,
    which Prefect turns into ``TerminationSignal``) reaches only this, the main thread: it also
    tells the stages running in worker threads to stop (:mod:`vae_model.runs.stopping`), else the
    flow would wait for them to finish."""
    stopping.reset()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    run_path = store.location(run_path)
    with lock.hold(run_path):
        with _registry_lock:
            _flags.pop(run_path, None)  # this flow run's cluster, not an earlier one's
        _tell_cluster(run_path, stop=False)  # an earlier interrupted run's flag
        with _registry_lock:
            _writing[run_path] = (parameters, started)
        try:
            yield run_path
            with _registry_lock:
                _written.append(run_path)
        except BaseException as err:
            if not isinstance(err, Exception):
                stopping.request()
                _tell_cluster(run_path, stop=True)
            error = ("interrupted" if isinstance(err, KeyboardInterrupt)
                     else "terminated (SIGTERM)" if isinstance(err, TerminationSignal)
                     else registry.one_line(err))
            with contextlib.suppress(OSError):  # a full disk must not hide the real error
                registry.record_failure(run_path, failed_stage(err), error, parameters, started)
            raise
        finally:
            with _registry_lock:
                _writing.pop(run_path, None)


def abandon(error: str) -> tuple[list[Path], list[Path]]:
    """Record ``error`` in the manifest of every run this process is writing, for a process
    about to end without the flow's own failure path (which would wait minutes on a Prefect
    API that is gone), and ask its stages to stop. Returns those runs, and the runs whose
    flow got through all its work."""
    stopping.request()
    with _registry_lock:
        writing, written = dict(_writing), list(_written)
    for run_path, (parameters, started) in writing.items():
        _tell_cluster(run_path, stop=True)
        with contextlib.suppress(OSError):
            registry.record_failure(run_path, "flow", error, parameters, started)
    return list(writing), written
