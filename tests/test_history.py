"""The series of runs of one configuration (table, regression flag, trend figure), index.html,
and the report artifact's markdown (inline PNG previews within the byte budget). Run
directories are written by hand here: no training, no Prefect server."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from tasks import publish
from vae_model.results import history
from vae_model.runs import provenance, storage

PARAMETERS = {"estimators": ["analytic", "monte_carlo"], "seeds": [0, 1, 2], "epochs": 10,
              "iwae_k": 100, "run_id": None, "artifacts_dir": "artifacts", "data_dir": None}


def _metrics(analytic: float, monte_carlo: float, std: float = 0.3) -> dict:
    """metrics.json for three seeds per estimator, scores centre - std, centre, centre + std
    (so the sample std over seeds is ``std``), with the comparison block statistics writes."""
    from vae_model.evaluation import statistics

    models = {}
    for estimator, centre in (("analytic", analytic), ("monte_carlo", monte_carlo)):
        for seed, value in enumerate([centre - std, centre, centre + std]):
            models[f"{estimator}-s{seed}"] = {
                "estimator": estimator, "seed": seed, "train_seconds": 10.0,
                "configuration": {"latent_size": 2, "epochs": 10}, "images_per_second": 4e4,
                "heldout": {"neg_elbo": value, "kl": 6.4, "reconstruction": value - 6.4,
                            "iwae_nll": value - 1.5, "iwae_k": 100}}
    return {"models": models, "comparison": statistics.compare(models)}


def _png(path, size=(1200, 500), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1] // 25, size[0] // 25, 3))
    image = Image.fromarray(pixels.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _run(root, run_id, finished, metrics=None, status="complete", report=True, processor=None,
         **changes):
    run = root / "runs" / run_id
    run.mkdir(parents=True)
    parameters = {**PARAMETERS, "run_id": run_id, **changes}
    if status:
        storage.write_json(run / "manifest.json", {
            "run_id": run_id, "status": status, "finished_at": finished,
            "parameters": parameters, "packages": {"tensorflow": "2.21.0", "prefect": "3.8.8"},
            **({"processor": processor} if processor else {})})
    if metrics:
        storage.write_json(run / "metrics.json", metrics)
    if report:
        (run / "report.html").write_text("<html></html>")
    return run


@pytest.fixture
def artifacts(tmp_path):
    root = tmp_path / "artifacts"
    _run(root, "a-first", "2026-11-20T03:01:00+00:00", _metrics(258.7, 259.9))
    _run(root, "b-other-config", "2026-11-21T03:01:00+00:00", _metrics(250.0, 251.0),
         epochs=20)
    _run(root, "c-second", "2026-11-21T03:02:00+00:00", _metrics(259.1, 259.5))
    _run(root, "d-killed", None, status=None, report=False)
    _run(root, "e-upgrade", "2026-11-23T03:01:00+00:00", _metrics(261.7, 260.0),
         processor={"model": "AMD EPYC", "cores": 2, "family": "25/1",
                    "instructions": ["avx2", "fma"]})
    return root


def test_configuration_hash_ignores_where_a_run_reads_and_writes():
    key = history.configuration_hash(PARAMETERS)
    assert key == history.configuration_hash({**PARAMETERS, "run_id": "x", "data_dir": "/d",
                                             "artifacts_dir": "/elsewhere"})
    assert key != history.configuration_hash({**PARAMETERS, "epochs": 11})
    assert key != history.configuration_hash({**PARAMETERS, "seeds": [3, 4, 5]})


def test_series_flags_a_move_beyond_the_seed_noise_and_only_that(artifacts):
    entries = history.runs(artifacts)
    key = history.configuration_hash(PARAMETERS)
    chosen = history.series(entries, key)
    assert [e["id"] for e in chosen] == ["a-first", "c-second", "e-upgrade"]
    assert chosen[0]["changes"] == {}
    # +0.4 and -0.4 nats: within max(1, 2 x 0.3)
    assert all(c["flag"] is None for m in chosen[1]["changes"].values() for c in m.values())
    upgrade = chosen[2]["changes"]
    assert upgrade["analytic"]["neg_elbo"]["flag"] == "regression"
    assert upgrade["analytic"]["neg_elbo"]["delta"] == pytest.approx(2.6)
    assert upgrade["monte_carlo"]["neg_elbo"]["flag"] is None  # +0.5
    assert [e["id"] for e in history.series(entries, key, last=2)] == ["c-second", "e-upgrade"]


def test_a_wide_seed_spread_raises_the_threshold():
    before = {"analytic": {"neg_elbo": {"mean": 258.0, "std": 2.0}}}
    after = {"analytic": {"neg_elbo": {"mean": 261.0, "std": 1.0}}}
    change = history.compare(before, after)["analytic"]["neg_elbo"]
    assert change["tolerance"] == pytest.approx(4.0) and change["flag"] is None
    after["analytic"]["neg_elbo"]["mean"] = 253.0
    assert history.compare(before, after)["analytic"]["neg_elbo"]["flag"] == "improvement"


def test_history_table_newest_first_with_human_columns_and_the_flag(artifacts):
    chosen = history.series(history.runs(artifacts), history.configuration_hash(PARAMETERS))
    frame = history.table(chosen)
    assert list(frame["Run"]) == ["e-upgrade", "c-second", "a-first"]
    assert frame.loc[0, "analytic −ELBO"] == "261.70 ± 0.30"
    assert frame.loc[0, "MC IWAE"] == "258.50 ± 0.30"
    assert frame.loc[0, "Change"] == "**regression**"
    assert history.describe_changes(chosen[-1]["changes"]) == (
        "regression: analytic held-out −ELBO +2.60 (> 1.00); "
        "regression: analytic IWAE +2.60 (> 1.00)")
    assert frame.loc[1, "Change"] == "within seed noise"
    assert frame.loc[2, "Change"] == "first run"
    markdown = publish.history_markdown(chosen, "key", history.trend_figure(chosen))
    assert "- `e-upgrade`: regression: analytic held-out −ELBO +2.60" in markdown
    assert "`c-second`:" not in markdown
    assert frame.loc[0, "Packages"] == "TF 2.21.0, Prefect 3.8.8"
    # a move beyond the seed noise can come from another processor: the table says which
    assert frame.loc[0, "Processor"] == "AMD EPYC (family/model 25/1), 2 cores, avx2 fma"
    assert frame.loc[1, "Processor"] == "–"  # a run from before processors were recorded


def test_trend_figure_is_a_png(artifacts):
    chosen = history.series(history.runs(artifacts), history.configuration_hash(PARAMETERS))
    with Image.open(io.BytesIO(history.trend_figure(chosen))) as image:
        assert image.format == "PNG" and image.width > 600


def test_index_lists_every_run_newest_first_with_status_and_links(artifacts):
    path = history.write_index(artifacts, history.runs(artifacts))
    text = path.read_text()
    order = [text.index(run) for run in ("e-upgrade", "c-second", "b-other-config",
                                         "a-first")]
    assert order == sorted(order)
    assert "href='runs/e-upgrade/report.html'" in text
    assert "href='runs/d-killed" not in text and "incomplete" in text
    assert "261.70 ± 0.30" in text


def _images(markdown: str) -> list[Image.Image]:
    found = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    return [Image.open(io.BytesIO(base64.b64decode(b, validate=True))) for b in found]


def test_report_markdown_holds_every_figure_as_a_small_png(artifacts):
    run = artifacts / "runs" / "e-upgrade"
    for i, name in enumerate(["curves", "scores", "reconstructions", "latent"]):
        _png(run / "figures" / f"{name}.png", seed=i)
    metrics = storage.read_json(run / "metrics.json")
    markdown = publish.report_markdown(run, metrics)
    images = _images(markdown)
    assert len(images) == 4 and all(i.format == "PNG" for i in images)
    assert max(i.width for i in images) <= publish.PREVIEW_WIDTHS[0]
    assert len(markdown.encode()) <= publish.REPORT_BUDGET
    assert "**Verdict:**" in markdown and metrics["comparison"]["verdict"] in markdown
    summary = markdown.index("Per estimator"), markdown.index("Per model")
    assert summary[0] < summary[1]
    assert "261.70 ± 0.30" in markdown  # analytic, mean ± std over seeds
    assert "file://" not in markdown


def test_a_tight_budget_shrinks_previews_then_leaves_figures_out_and_says_so(artifacts,
                                                                           monkeypatch):
    run = artifacts / "runs" / "e-upgrade"
    for i in range(4):
        _png(run / "figures" / f"curves-{i}.png", seed=i)
    metrics = storage.read_json(run / "metrics.json")
    roomy = publish.report_markdown(run, metrics)
    text = len(publish.report_markdown(run, metrics, budget=1).encode())  # no figure fits
    with monkeypatch.context() as patch:
        patch.setattr(publish, "PREVIEW_WIDTHS", publish.PREVIEW_WIDTHS[-1:])
        budget = len(publish.report_markdown(run, metrics).encode())  # all at the smallest
    assert budget < len(roomy.encode())
    smaller = publish.report_markdown(run, metrics, budget=budget)
    assert len(smaller.encode()) <= budget and "Left out" not in smaller
    assert len(_images(smaller)) == 4
    assert max(i.width for i in _images(smaller)) < max(i.width for i in _images(roomy))
    budget = text + (budget - text) // 2
    tight = publish.report_markdown(run, metrics, budget=budget)
    assert len(tight.encode()) <= budget + 200  # the note saying what was left out
    assert 0 < len(_images(tight)) < 4 and "Left out to keep the artifact under" in tight


def test_wide_tables_are_split_to_fit_the_page_repeating_their_key_columns():
    import pandas as pd

    frame = pd.DataFrame({"Configuration": ["mlp · z=2"] * 2, "Model": ["analytic-s0", "mc-s0"],
                          **{f"Score number {i}": ["280.62 ± 0.86", "281.00 ± 0.85"]
                             for i in range(9)}})
    parts = publish.fit_width("Per model", frame)
    assert len(parts) > 1
    assert parts[0][0] == "Per model — mlp · z=2" and parts[1][0] == "Per model (continued)"
    widths = [len(part.columns) for _, part in parts]
    assert max(widths) - min(widths) <= 1  # even tables, not a last one with a single column
    for _, part in parts:
        assert list(part.columns)[0] == "Model" and "Configuration" not in part.columns
        assert sum(publish._width(part, c) for c in part.columns) <= publish.UI_WIDTH
    shown = [c for _, part in parts for c in part.columns if c != "Model"]
    assert shown == [f"Score number {i}" for i in range(9)]  # each once, in order
    narrow = frame.iloc[:, :3]
    assert [p[1].columns.tolist() for p in publish.fit_width("t", narrow)] == [
        ["Model", "Score number 0"]]


def test_a_run_is_credited_to_the_code_that_trained_and_evaluated_it(tmp_path):
    run = tmp_path / "run"
    for model, trained, evaluated in (("analytic-s0", "aaa", "aaa"), ("monte_carlo-s0", "aaa",
                                                                       "aaa")):
        storage.write_json(run / "models" / model / "state.json", {"code": trained})
        storage.write_json(run / "models" / model / "evaluation.json", {"code": evaluated})
    # the report rerun by newer code does not claim the numbers
    assert history.record_provenance(run, {"seeds": [0]})["code"] == "aaa"
    assert storage.read_json(run / "provenance.json")["code"] == "aaa"
    storage.write_json(run / "models" / "monte_carlo-s0" / "evaluation.json", {"code": "bbb"})
    assert history.numbers_code(run) == "trained aaa; evaluated aaa, bbb"
    # a run whose files do not say (written before they did): this process's code
    assert history.numbers_code(tmp_path / "older") == provenance.code_version()
