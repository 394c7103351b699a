"""Figures and report of made-up runs of any size (nothing trained): sizes stay bounded, no
axis mixes likelihoods, image figures show one seed per configuration and estimator."""

import re

import numpy as np
import pytest

from tests import fake_runs
from vae_model.results import facets, figures, report
from vae_model.results.facets import ESTIMATOR_COLOURS
from vae_model.results.layout import DPI, MAX_HEIGHT_PX, MAX_WIDTH_PX

DEFAULT_RUN = fake_runs.configs(seeds=(0, 1, 2))  # one configuration, 6 models
ISSUE_13_SWEEP = fake_runs.configs(seeds=(0,), latent_sizes=(2, 8),
                                   architectures=("mlp", "conv"),
                                   likelihoods=("bernoulli", "continuous_bernoulli"), epochs=1)
HUGE_SWEEP = fake_runs.configs(seeds=(0,), latent_sizes=(2, 3, 4, 5, 6, 8, 16, 32),
                               architectures=("mlp", "conv"),
                               likelihoods=("bernoulli", "continuous_bernoulli"))


def _pixels(fig):
    width, height = fig.get_size_inches() * DPI
    return round(width), round(height)


@pytest.mark.parametrize("kind", list(figures.FIGURES))
def test_figure_size_is_bounded_whatever_the_number_of_models(kind):
    sizes = {}
    for label, configs in [("2 models", DEFAULT_RUN[:2]), ("6 models", DEFAULT_RUN),
                           ("16 models", ISSUE_13_SWEEP), ("64 models", HUGE_SWEEP)]:
        pages = figures.build(kind, fake_runs.records(configs))
        assert pages, (kind, label)
        sizes[label] = [_pixels(fig) for fig in pages]
        for fig in pages:
            figures.plt.close(fig)
    for label, pages in sizes.items():
        for width, height in pages:
            assert 500 <= width <= MAX_WIDTH_PX and 200 <= height <= MAX_HEIGHT_PX, (label, pages)
    assert len(sizes["16 models"]) == 1  # the issue's sweep fits one page per figure
    assert len(sizes["64 models"]) >= 2  # 32 configurations: paginated, not squeezed


def _tagged_likelihoods(ax) -> set[str]:
    return {artist.get_gid().split("=", 1)[1] for artist in ax.get_children()
            if (artist.get_gid() or "").startswith("likelihood=")}


def _y_values(ax) -> np.ndarray:
    flat = [np.asarray(line.get_ydata(), dtype=float).ravel() for line in ax.get_lines()]
    return np.concatenate(flat) if flat else np.array([])


@pytest.mark.parametrize("kind", list(figures.FIGURES))
def test_no_axis_mixes_likelihoods(kind):
    records = fake_runs.records(ISSUE_13_SWEEP)  # Bernoulli near +250 nats, CB near -900
    seen = set()
    for fig in figures.build(kind, records):
        for ax in fig.axes:
            likelihoods = _tagged_likelihoods(ax)
            assert len(likelihoods) <= 1, (kind, ax.get_title(), likelihoods)
            seen |= likelihoods
            if kind in ("curves", "scores"):  # and by the numbers, not only the tags
                values = _y_values(ax)
                values = values[np.isfinite(values)]
                assert not (np.any(values > 0) and np.any(values < -500)), (kind, ax.get_title())
        figures.plt.close(fig)
    assert seen == {"bernoulli", "continuous_bernoulli"}  # the check above saw real data


def test_one_configuration_is_one_facet_and_estimators_keep_their_colours():
    fig, = figures.build("curves", fake_runs.records(DEFAULT_RUN))
    data_axes = [ax for ax in fig.axes if _tagged_likelihoods(ax)]
    assert len(data_axes) == 1
    colours = {line.get_color() for line in data_axes[0].get_lines()}
    assert colours == set(ESTIMATOR_COLOURS.values())
    figures.plt.close(fig)


def test_facet_titles_name_only_what_varies():
    groups = facets.group(fake_runs.records(ISSUE_13_SWEEP))
    assert [g["title"] for g in groups][:2] == ["mlp · Bernoulli · z=2", "mlp · Bernoulli · z=8"]
    assert all(len(g["models"]) == 2 for g in groups) and len(groups) == 8
    varying_one = facets.group(fake_runs.records(fake_runs.configs(latent_sizes=(2, 8))))
    assert [g["title"] for g in varying_one] == ["z=2", "z=8"]


def test_representatives_are_the_lowest_seed_of_each_configuration_and_estimator():
    records = fake_runs.records(fake_runs.configs(seeds=(2, 0, 1), latent_sizes=(2, 8)))
    chosen = facets.representatives(records)
    assert list(chosen) == ["analytic-s0", "monte_carlo-s0", "analytic-z8-s0",
                            "monte_carlo-z8-s0"]
    assert facets.representative_seeds_phrase(records) == "seed 0"


def _write_run(tmp_path, configs, extras=True):
    run = tmp_path / "run"
    directories = fake_runs.write_model_dirs(run, configs, extras)
    report.write_report(run, directories, {"seeds": [0]}, {"data_dir": "d", "sha256": {}},
                        [str(run / "figures" / f"{k}.png") for k in figures.FIGURES], {})
    return run


def test_report_opens_with_the_verdict_and_a_row_per_configuration(tmp_path):
    run = _write_run(tmp_path, ISSUE_13_SWEEP)
    lines = (run / "report.md").read_text().splitlines()
    assert lines[0].startswith("# VAE run") and lines[2].startswith("**Verdict: ")
    assert lines[4].startswith("| Configuration | analytic KL −ELBO | Monte-Carlo KL −ELBO | Δ")
    assert len([line for line in lines[6:] if line.startswith("|")][:8]) == 8
    html = (run / "report.html").read_text()
    assert html.index("Verdict") < html.index("<table")


def test_comparison_csv_has_a_row_per_model_with_seed_and_standard_errors(tmp_path):
    import pandas as pd
    table = pd.read_csv(_write_run(tmp_path, DEFAULT_RUN) / "comparison.csv")
    assert len(table) == 6 and sorted(table["seed"]) == [0, 0, 1, 1, 2, 2]
    assert table["heldout_neg_elbo_stderr"].notna().all()


def test_missing_standard_errors_show_as_a_dash(tmp_path):
    text = (_write_run(tmp_path, DEFAULT_RUN, extras=False) / "report.md").read_text()
    per_model = text[text.index("## Per model"):]
    assert re.search(r"\| analytic-s0 \| \d+\.\d\d \| ", per_model)  # no "±" without one
    assert "| – |" in text  # per-seed standard error without per_image.csv


def test_report_size_of_a_16_model_sweep_stays_near_the_default_runs(tmp_path):
    default = _write_run(tmp_path / "a", DEFAULT_RUN)
    sweep = _write_run(tmp_path / "b", ISSUE_13_SWEEP)
    for name in ("report.md", "report.html"):
        assert (sweep / name).stat().st_size <= 3 * (default / name).stat().st_size, name


def test_summary_tables_fit_a_1400_px_page():
    metrics_dir = fake_runs.records(ISSUE_13_SWEEP)
    metrics = {"models": {n: {**r, "likelihood": r["configuration"]["likelihood"],
                              "train_seconds": 9.0, "images_per_second": 4e4}
                          for n, r in metrics_dir.items()}}
    from vae_model.evaluation import statistics
    metrics["comparison"] = statistics.compare(metrics["models"])
    tables = report.summary_tables(metrics)
    assert tables[0][1].columns[0] == "Configuration" and len(tables[0][1]) == 8
    for title, frame in tables:
        # ~7 px per character at 13 px, 16 px padding per cell
        widths = [max([len(str(c))] + [len(str(v)) for v in frame[c]]) for c in frame.columns]
        assert sum(7 * w + 16 for w in widths) <= 1400, (title, widths)


def test_image_figures_show_one_seed_per_configuration_unless_all_models(tmp_path):
    from tests.conftest import synthetic_arrays
    from vae_model.model.networks import VAE
    from vae_model.results import model_figures

    configs = fake_runs.configs(seeds=(1, 0))
    records = fake_runs.records(configs)
    loaded = []

    def load_model(name):  # untrained networks: the figures' layout is what is tested
        loaded.append(name)
        return VAE(next(c for c in configs if c.name == name))

    arrays = synthetic_arrays()
    images, labels = arrays["test_images"], arrays["test_labels"]
    paths = model_figures.render(records, load_model, images, labels, tmp_path / "a")
    assert sorted(loaded) == ["analytic-s0", "monte_carlo-s0"]
    assert sorted(p.name for p in paths) == sorted(f"{k}.png" for k in
                                                   ("reconstructions", "generations", "latent",
                                                    "manifold"))
    loaded.clear()
    paths = model_figures.render(records, load_model, images, labels, tmp_path / "b",
                                 all_models=True)
    assert len(loaded) == 4
    assert {p.name for p in paths} >= {f"{k}-{c.name}.png" for c in configs
                                       for k in ("reconstructions", "latent", "manifold")}
