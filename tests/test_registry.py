"""The run registry: listing runs of any age, headline numbers, and pruning old ones."""

import os

import pytest

from vae_model import UserInputError
from vae_model.runs import lock, registry, storage


def make_run(root, run_id, status="complete", finished="2026-11-20T03:00:00+00:00",
             metrics=None):
    path = root / "runs" / run_id
    path.mkdir(parents=True)
    if status:
        storage.write_json(path / "manifest.json", {"run_id": run_id, "status": status,
                                                    "finished_at": finished})
    if metrics:
        storage.write_json(path / "metrics.json", metrics)
    return path


OLD_METRICS = {"models": {
    "analytic": {"estimator": "analytic", "heldout": {"neg_elbo": 258.0, "iwae_nll": 256.0}},
    "monte_carlo": {"estimator": "monte_carlo", "heldout": {"neg_elbo": 260.0,
                                                            "iwae_nll": 257.0}}}}
NEW_METRICS = {"models": {}, "comparison": {"by_estimator": {
    "analytic": {"neg_elbo": {"mean": 258.5, "std": 0.5, "n": 3},
                 "iwae_nll": {"mean": 256.5, "std": 0.25, "n": 3}}}}}


def test_list_runs_reads_old_and_new_metrics_failed_and_unfinished_runs(tmp_path):
    make_run(tmp_path, "old", finished="2026-11-20T03:00:00+00:00", metrics=OLD_METRICS)
    make_run(tmp_path, "new", finished="2026-11-21T03:00:00+00:00", metrics=NEW_METRICS)
    failed = make_run(tmp_path, "bad", status=None)
    storage.write_json(failed / "manifest.json", {
        "status": "failed", "stage": "train-analytic-s0", "error": "boom",
        "started_at": "2026-11-22T03:00:00+00:00", "finished_at": "2026-11-22T03:00:05+00:00"})
    make_run(tmp_path, "killed", status=None)
    (tmp_path / "latest").symlink_to("runs/new")

    runs = {r["id"]: r for r in registry.list_runs(tmp_path)}
    assert [r["id"] for r in registry.list_runs(tmp_path)][:3] == ["old", "new", "bad"]
    assert runs["old"]["headline"]["analytic"]["neg_elbo"] == {"mean": 258.0, "std": None,
                                                               "n": 1}
    assert runs["old"]["headline"]["monte_carlo"]["iwae_nll"]["mean"] == 257.0
    assert runs["new"]["headline"]["analytic"]["neg_elbo"]["std"] == 0.5
    assert runs["new"]["latest"] and not runs["old"]["latest"]
    assert (runs["bad"]["status"], runs["bad"]["stage"]) == ("failed", "train-analytic-s0")
    assert runs["killed"]["status"] == "incomplete" and runs["killed"]["headline"] == {}
    assert all(r["locked"] is None for r in runs.values())


def test_a_locked_run_is_listed_as_running_with_its_holder(tmp_path):
    path = make_run(tmp_path, "busy")
    with lock.hold(path, command="test"):
        (run,) = registry.list_runs(tmp_path)
        assert run["status"] == "running" and run["locked"]["pid"] == os.getpid()
    assert registry.list_runs(tmp_path)[0]["status"] == "complete"


def test_prune_keeps_the_newest_latest_and_locked_runs(tmp_path):
    for day in range(1, 6):
        make_run(tmp_path, f"d{day}", finished=f"2026-11-0{day}T03:00:00+00:00")
    (tmp_path / "latest").symlink_to("runs/d1")
    assert [r["id"] for r in registry.prune(tmp_path, keep=2, dry_run=True)] == ["d2", "d3"]
    assert len(registry.list_runs(tmp_path)) == 5
    with lock.hold(tmp_path / "runs" / "d2"):
        removed = registry.prune(tmp_path, keep=2)
    assert [r["id"] for r in removed] == ["d3"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["d1", "d2", "d4", "d5"]
    with pytest.raises(UserInputError, match="--keep"):
        registry.prune(tmp_path, keep=-1)


def test_missing_files_names_what_is_not_there(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"x")
    assert registry.missing_files(tmp_path, ["figures/a.png", str(tmp_path / "b.png")]) == [
        str(tmp_path / "b.png")]
