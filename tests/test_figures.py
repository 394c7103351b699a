"""Run figures of made-up runs of any size (nothing trained): sizes stay bounded, no axis mixes
likelihoods, one configuration is one facet with the estimators' colours."""

import numpy as np
import pytest

from tests.helpers import fake_runs
from tests.helpers.fake_runs import DEFAULT_RUN, HUGE_SWEEP, ISSUE_13_SWEEP
from vae_model.results import figures
from vae_model.results.facets import ESTIMATOR_COLOURS
from vae_model.results.layout import DPI, MAX_HEIGHT_PX, MAX_WIDTH_PX


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


@pytest.mark.parametrize("margin", [0.5, 2.0])
def test_the_differences_figure_shows_the_margin_and_both_intervals(margin):
    fig, = figures.build("differences", fake_runs.records(DEFAULT_RUN), margin=margin)
    ax = fig.axes[0]
    band, = [p for p in ax.patches if p.get_alpha() == 0.12]  # the equivalence margin
    assert (band.get_x(), band.get_x() + band.get_width()) == pytest.approx((-margin, margin))
    thick = [line for line in ax.get_lines() if line.get_linewidth() == 3]
    assert len(thick) == 2  # the 90% intervals of -ELBO and IWAE
    outcome = [t.get_text() for t in ax.texts]
    assert outcome and outcome[0] in ("analytic KL better", "Monte-Carlo KL better",
                                      "equivalent", "inconclusive")
