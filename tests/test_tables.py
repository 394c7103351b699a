"""The report's tables: values to the precision of their uncertainty, and summary tables of a
16-model sweep that fit a 1400 px page."""

import pytest

from tests.helpers import fake_runs
from tests.helpers.fake_runs import ISSUE_13_SWEEP
from vae_model.evaluation import statistics
from vae_model.results import tables
from vae_model.results.tables import plus_minus


@pytest.mark.parametrize("value, spread, shown", [
    (259.78, 0.80, "259.78 ± 0.80"),  # two decimals while the spread has two significant digits
    (6.3731, 0.00759, "6.3731 ± 0.0076"),  # smaller spreads: to their second significant digit
    (6.43, 0.0100, "6.430 ± 0.010"),
    (256.0169, 0.00423, "256.0169 ± 0.0042"),
    (1.5, 2e-9, "1.50 ± 2.0e-09"),
    (3.0, None, "3.00"),
])
def test_a_value_is_shown_to_the_precision_of_its_uncertainty(value, spread, shown):
    assert plus_minus(value, spread) == shown


def test_summary_tables_fit_a_1400_px_page():
    metrics_dir = fake_runs.records(ISSUE_13_SWEEP)
    metrics = {"models": {n: {**r, "likelihood": r["configuration"]["likelihood"],
                              "train_seconds": 9.0, "images_per_second": 4e4}
                          for n, r in metrics_dir.items()}}
    metrics["comparison"] = statistics.compare(metrics["models"])
    summary = tables.summary_tables(metrics)  # the report's (report.summary_tables)
    assert summary[0][1].columns[0] == "Configuration" and len(summary[0][1]) == 8
    for title, frame in summary:
        # ~7 px per character at 13 px, 16 px padding per cell
        widths = [max([len(str(c))] + [len(str(v)) for v in frame[c]]) for c in frame.columns]
        assert sum(7 * w + 16 for w in widths) <= 1400, (title, widths)
