"""What the terminal shows: a run that fails for a reason the user can fix is one line, no
traceback (:func:`quiet_user_tracebacks` makes Prefect's *console* log handler drop a user
error's traceback; the record is shared with the API log handler, which keeps it for the
Prefect UI), and ``vae-pipeline runs`` is a table (:func:`format_runs`)."""

from __future__ import annotations

import copy
import logging
import sys

from vae_model import UserInputError


def fixable_kinds() -> tuple:
    """The errors a user fixes (a bad input; a diverged training: lower the learning rate;
    an interrupted run: rerun it).
    TrainingDiverged only if its module is loaded: importing it would import TensorFlow, whose
    start-up lines would spoil a one-line error found before any training."""
    from vae_model.runs.stopping import Stopped  # a requested stop: its traceback says nothing

    training = sys.modules.get("vae_model.training.loop")
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
