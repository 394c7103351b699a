"""The runs under an artifacts root: what each is (status, dates, headline numbers), and pruning
old ones. Plain Python over the files each run writes (manifest.json, metrics.json), so it works
for runs of any age and without Prefect."""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
from pathlib import Path

from vae_model.runs import lock, storage, store

HEADLINE_METRICS = ("neg_elbo", "iwae_nll")


def missing_files(run: str | os.PathLike, paths) -> list[str]:
    """Those of ``paths`` (absolute, or relative to ``run``) that are not regular files, in the
    order given: a report or manifest must not name a file that is not there."""
    run = store.location(run)
    return [str(p) for p in paths
            if not (store.location(str(p)) if store.is_url(str(p)) else run / p).is_file()]


def _read(path: Path):
    try:
        return storage.read_json(path)
    except (OSError, ValueError):  # absent, half-copied, or not JSON: the run says nothing
        return None


def _stat(values: list[float]) -> dict:
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(values) / len(values)
    std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
           if len(values) > 1 else None)
    return {"mean": mean, "std": std, "n": len(values)}


def headline(metrics: dict | None) -> dict:
    """``{estimator: {"neg_elbo": {"mean", "std", "n"}, "iwae_nll": {...}}}`` in nats per image.
    From ``comparison.by_estimator`` where the run wrote it (multi-seed runs); for older runs
    the mean (and sample std over models, None for one) of each estimator's models' held-out
    scores."""
    if not metrics:
        return {}
    by_estimator = (metrics.get("comparison") or {}).get("by_estimator")
    if by_estimator:
        return {estimator: {m: {"mean": (scores.get(m) or {}).get("mean"),
                                "std": (scores.get(m) or {}).get("std"),
                                "n": (scores.get(m) or {}).get("n")}
                            for m in HEADLINE_METRICS}
                for estimator, scores in by_estimator.items()}
    grouped: dict[str, dict[str, list]] = {}
    for model in (metrics.get("models") or {}).values():
        scores = grouped.setdefault(model.get("estimator", "?"), {m: [] for m in HEADLINE_METRICS})
        for m in HEADLINE_METRICS:
            scores[m].append((model.get("heldout") or {}).get(m))
    return {e: {m: _stat(v) for m, v in scores.items()} for e, scores in grouped.items()}


def _iso_mtime(path: Path) -> str:
    try:
        stamp = path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not stamp:  # a store's "directory" is a prefix, with no time of its own
        return None
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat(timespec="seconds")


def _size(path: Path) -> int:
    if store.is_remote(path):
        return int(path.fs.du(path.path)) if path.fs.exists(path.path) else 0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while walking
    return total


def list_runs(artifacts_root: str | os.PathLike) -> list[dict]:
    """Every directory under ``<root>/runs``, oldest first (by its date). Each entry:
    ``id``, ``path``, ``status`` ("complete", "failed", "running" while a process holds its
    lock, else "incomplete": no manifest, e.g. killed), ``started_at``, ``finished_at``
    (ISO-8601 or None), ``date`` (finished, else started, else the directory's mtime),
    ``stage`` and ``error`` (failed runs), ``headline`` (see :func:`headline`), ``models``
    (count), ``locked`` (holder dict or None), ``latest`` (``<root>/latest`` points here),
    ``bytes`` (size on disk)."""
    root = store.location(artifacts_root)
    runs_dir = root / "runs"
    if not runs_dir.is_dir():
        return []
    latest = latest_run(root)
    runs = []
    for path in sorted((p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink()),
                       key=str):
        manifest = _read(path / "manifest.json") or {}
        metrics = _read(path / "metrics.json")
        holder = lock.holder(path)
        status = manifest.get("status") or "incomplete"
        if holder is not None:
            status = "running"
        started, finished = manifest.get("started_at"), manifest.get("finished_at")
        runs.append({
            "id": path.name, "path": str(path), "status": status,
            "started_at": started, "finished_at": finished,
            "date": finished or started or _iso_mtime(path) or "",
            "stage": manifest.get("stage"), "error": manifest.get("error"),
            "headline": headline(metrics),
            # the first estimator pair's comparison (decision, intervals), for the history
            "pair": (((metrics or {}).get("comparison") or {}).get("paired") or [None])[0],
            "models": len((metrics or {}).get("models") or manifest.get("models") or {}),
            "locked": holder, "latest": str(path) == str(latest), "bytes": _size(path),
        })
    return sorted(runs, key=lambda r: (_as_utc(r["date"]), r["id"]))


def _as_utc(stamp: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def prune(artifacts_root: str | os.PathLike, keep: int, dry_run: bool = False) -> list[dict]:
    """Remove all but the ``keep`` newest runs; never the one ``latest`` points at, nor one a
    process is writing (its lock is taken for the removal, so none can start meanwhile).
    Returns the runs removed (or, with ``dry_run``, that would be)."""
    if not isinstance(keep, int) or keep < 0:
        from vae_model import UserInputError
        raise UserInputError(f"--keep must be a whole number >= 0, got {keep!r}")
    runs = list_runs(artifacts_root)
    older = runs[:max(len(runs) - keep, 0)]
    removed = []
    for run in older:
        if run["latest"] or run["locked"] is not None:
            continue
        if not dry_run:
            try:
                with lock.hold(store.location(run["path"]), command="vae-pipeline prune"):
                    _remove_contents(store.location(run["path"]))
            except lock.RunLocked:
                continue  # a writer started since the listing: keep it
        removed.append(run)
    return removed


def _remove_contents(run) -> None:
    """Delete a run while holding its lock: on a disk the lock file goes with the directory;
    in a store every object but the lease, which is deleted when released."""
    if store.is_remote(run):
        lease_object = (run / lock.LOCK_FILE).path
        run.fs.rm([name for name in run.fs.find(run.path) if name != lease_object])
    else:
        shutil.rmtree(run)


def latest_run(root):
    """The run ``<root>/latest`` points at, or None: a symlink on a disk, an object holding
    ``runs/<id>`` in a store (which has no links)."""
    link = root / "latest"
    if not store.is_remote(root):
        return link.resolve() if link.is_symlink() else None
    try:
        target = link.read_text(encoding="utf-8").strip()
    except (OSError, FileNotFoundError):
        return None
    return root / target if target.startswith("runs/") else None


def point_latest(root, run) -> object:
    """Point ``<root>/latest`` at ``run`` (replaced atomically); returns the pointer."""
    link = root / "latest"
    if store.is_remote(root):
        return storage.write_text(link, f"runs/{run.name}\n")
    tmp = link.with_name(f".latest.{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(Path("runs") / run.name)
    os.replace(tmp, link)
    return link


def one_line(err: BaseException) -> str:
    """An exception as the single line a person reads: the message of a user error, else the
    exception's type and first line."""
    from vae_model import UserInputError

    text = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, UserInputError):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def record_failure(run: str | os.PathLike, stage: str, error: str, parameters: dict | None = None,
                   started_at: str | None = None) -> Path:
    """Mark ``run`` failed in its manifest.json (what failed, where, when), keeping what an
    earlier complete manifest said (its models and data let the run be finished later); a later
    complete run of the same id replaces it. ``latest`` moves off this run: it only ever
    points at a complete one."""
    run = store.location(run)
    previous = _read(run / "manifest.json")
    manifest = dict(previous) if isinstance(previous, dict) else {}
    was_complete = "models" in manifest  # complete once: keep what finishing it needs
    manifest.update({
        "run_id": run.name, "status": "failed", "stage": stage, "error": error,
        "started_at": started_at or manifest.get("started_at"),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    if parameters is not None:
        manifest["failed_parameters" if was_complete else "parameters"] = parameters
    path = storage.write_json(run / "manifest.json", manifest)
    _move_latest_off(run)
    return path


def _move_latest_off(run: Path) -> None:
    run = run if store.is_remote(run) else run.resolve()
    root = run.parent.parent
    if str(latest_run(root)) != str(run):
        return
    complete = [r for r in list_runs(root) if r["status"] == "complete" and r["id"] != run.name]
    if not complete:
        (root / "latest").unlink()
        return
    point_latest(root, root / "runs" / complete[-1]["id"])
