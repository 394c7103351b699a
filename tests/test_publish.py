"""What a run publishes as Prefect artifacts (tasks.publish): the report's markdown with inline
PNG previews within the byte budget, the history's markdown, and tables split to fit the UI.
Run directories are written by hand (tests/helpers/fake_runs.py): no training, no server."""

import base64
import io
import re

import numpy as np
import pandas as pd
from PIL import Image

from tasks import publish
from tests.helpers.fake_runs import PARAMETERS
from vae_model.results import history
from vae_model.runs import storage


def _png(path, size=(1200, 500), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1] // 25, size[0] // 25, 3))
    image = Image.fromarray(pixels.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _images(markdown: str) -> list[Image.Image]:
    found = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    return [Image.open(io.BytesIO(base64.b64decode(b, validate=True))) for b in found]


def test_history_markdown_lists_only_the_runs_that_moved(past_runs):
    chosen = history.series(history.runs(past_runs), history.configuration_hash(PARAMETERS))
    markdown = publish.history_markdown(chosen, "key", history.trend_figure(chosen))
    assert "- `e-upgrade`: regression: analytic held-out −ELBO +2.60" in markdown
    assert "`c-second`:" not in markdown


def test_report_markdown_holds_every_figure_as_a_small_png(past_runs):
    run = past_runs / "runs" / "e-upgrade"
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


def test_a_tight_budget_shrinks_previews_then_leaves_figures_out_and_says_so(past_runs,
                                                                           monkeypatch):
    run = past_runs / "runs" / "e-upgrade"
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
