"""What the terminal shows when a run fails for a reason the user can fix: one line, no traceback.

Three parts. Before a flow starts: :func:`check_api` probes the Prefect API the run would use, so
an unreachable server is one line naming the URL and both fixes (instead of ~100 lines and three
tracebacks from Prefect's client). Inside a flow run: :func:`quiet_user_tracebacks` makes
Prefect's *console* log handler print a user error's log record without its traceback; the
record is shared with the API log handler, which keeps the traceback for the Prefect UI. And
while a flow runs against a server of the user's: :func:`watch_api`, which ends the command in
one line if that server stops answering for good.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import threading
import time

from vae_model import UserInputError


def fixable_kinds() -> tuple:
    """The errors a user fixes (a bad input; a diverged training: lower the learning rate;
    an interrupted run: rerun it).
    TrainingDiverged only if its module is loaded: importing it would import TensorFlow, whose
    start-up lines would spoil a one-line error found before any training."""
    from vae_model.stopping import Stopped  # a requested stop: its traceback says nothing

    training = sys.modules.get("vae_model.training")
    return (UserInputError, Stopped) + ((training.TrainingDiverged,) if training else ())


def fixable(err: BaseException | None) -> BaseException | None:
    """``err``, or the exception it was raised from, if it is one the user can fix."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, fixable_kinds()):
            return err
        err = err.__cause__ or err.__context__
    return None


def _without_user_traceback(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` without its traceback if its exception is a user error. A copy:
    the record is shared with the API log handler, which keeps the traceback for the UI, and
    ``Formatter.format`` caches the formatted traceback on the record (``exc_text``)."""
    if record.exc_info and fixable(record.exc_info[1]) is not None:
        record = copy.copy(record)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
    return record


def quiet_user_tracebacks() -> None:
    """Make Prefect's console log handler print user errors without their traceback
    (idempotent). Patched on the class, not on today's handler instances: Prefect configures
    logging again when its temporary server starts, replacing the instances."""
    from prefect.logging.handlers import PrefectConsoleHandler

    if getattr(PrefectConsoleHandler.format, "quiet_user_tracebacks", False):
        return
    inner = PrefectConsoleHandler.format

    def format(self, record: logging.LogRecord) -> str:
        return inner(self, _without_user_traceback(record))
    format.quiet_user_tracebacks = True
    PrefectConsoleHandler.format = format


def api_url() -> tuple[str | None, str]:
    """The API URL Prefect will use, and where it was set (for the fix to name)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"], "environment"
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return (str(url) if url else None), "profile"


def check_api(timeout: float = 3.0) -> None:
    """Raise a one-line :class:`UserInputError` if ``PREFECT_API_URL`` is set and nothing
    answers there. Any HTTP answer counts as reachable (auth errors are Prefect's to report);
    unset, Prefect starts a temporary local server, which needs nothing."""
    url, source = api_url()
    if not url:
        return
    reason = _unreachable(url, timeout)
    if reason is not None:
        unset = ("unset PREFECT_API_URL" if source == "environment"
                 else "run `prefect config unset PREFECT_API_URL`")
        raise UserInputError(
            f"cannot reach the Prefect API at {url} ({reason}): start that server "
            f"(prefect server start), or {unset} to use a temporary local one")


def _unreachable(url: str, timeout: float) -> str | None:
    """None if the API at ``url`` answers at all (any HTTP status: auth errors are Prefect's
    to report), else the name of the error that reaching it raised."""
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError as err:
        return type(err).__name__
    return None


# How long the user's Prefect API may be silent before the run is given up: a restarted server
# is back well within it, and Prefect's client retries a request for ~60 s (2 + 4 + ... + 32).
API_GRACE_SECONDS = 60.0
GRACE_VARIABLE = "VAE_PIPELINE_API_GRACE_SECONDS"


def api_grace_seconds() -> float:
    """API_GRACE_SECONDS, or the environment's VAE_PIPELINE_API_GRACE_SECONDS (checked)."""
    value = os.environ.get(GRACE_VARIABLE, "").strip()
    try:
        grace = float(value) if value else API_GRACE_SECONDS
    except ValueError:
        grace = float("nan")
    if not grace > 0 or grace == float("inf"):
        raise UserInputError(f"{GRACE_VARIABLE} must be a number of seconds > 0, got {value!r}: "
                             f"set it so, or unset it for {API_GRACE_SECONDS:.0f}")
    return grace


def watch_api(url: str, grace: float, every: float = 2.0) -> None:
    """End this command if the Prefect API at ``url`` stops answering for ``grace`` s while it
    runs. Without this, a flow whose server went away trains on, then spends ~80 s on each
    state it cannot report and minutes flushing logs, printing tracebacks all along (measured:
    rc 1 five minutes after the server was killed). Instead: the runs being written are
    marked failed with the reason, their stages told to stop, one line printed, and the
    process ends (rc 1; rc 0 if the flow had finished its work, with a warning)."""
    threading.Thread(target=_watch, args=(url, grace, every), name="api-watch",
                     daemon=True).start()


def _watch(url: str, grace: float, every: float) -> None:
    silent_since = None
    while True:
        time.sleep(every)
        if _unreachable(url, timeout=5.0) is None:
            silent_since = None
            continue
        silent_since = silent_since or time.monotonic()
        if time.monotonic() - silent_since >= grace:
            _give_up(f"the Prefect API at {url} stopped answering for {grace:.0f} s")


def _give_up(reason: str) -> None:
    from tasks import guard

    abandoned, finished = guard.abandon(reason)
    failed = bool(abandoned) or not finished
    sys.stderr.write("\n")  # Prefect's "Error logging to API" ends without one
    if failed:
        where = (f"; what was finished is kept in {abandoned[0]}: once the server is back, rerun "
                 f"with --run-id {abandoned[0].name} to resume" if abandoned else "")
        print(f"vae-pipeline: error: {reason}{where}", file=sys.stderr, flush=True)
    else:
        print(f"vae-pipeline: warning: {reason} after the run finished: its results are in "
              f"{finished[-1]}, but the Prefect UI will not show the flow run's end",
              file=sys.stderr, flush=True)
    import psutil  # Dask's local workers, if any, would outlive an exit without clean-up

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()
    sys.stdout.flush()
    os._exit(1 if failed else 0)


def _score(stat: dict) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    std = stat.get("std")
    return f"{stat['mean']:.2f}" + (f"±{std:.2f}" if std is not None else "")


def format_runs(runs: list[dict]) -> list[str]:
    """``vae-pipeline runs``: one line per run, oldest first; headline numbers are held-out
    -ELBO per estimator (mean±std over seeds, nats per image)."""
    rows = [("run", "status", "date", "models", "held-out -ELBO by estimator", "size", "")]
    for r in runs:
        scores = "  ".join(f"{e} {_score(s.get('neg_elbo'))}" for e, s in r["headline"].items())
        notes = ["latest"] if r["latest"] else []
        if r["locked"]:
            notes.append(f"written by pid {r['locked'].get('pid')} on "
                         f"{r['locked'].get('host')}")
        if r["status"] == "failed":
            notes.append(f"{r.get('stage')}: {r.get('error')}")
        rows.append((r["id"], r["status"], (r["date"] or "")[:19].replace("T", " "),
                     str(r["models"]), scores or "-", f"{r['bytes'] / 1e6:.1f} MB",
                     "; ".join(notes)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]
            for row in rows]
