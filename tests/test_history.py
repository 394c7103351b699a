"""The series of runs of one configuration (table, regression flag, trend figure), index.html,
and what a run's numbers are credited to. Run directories are written by hand
(tests/helpers/fake_runs.py): no training, no Prefect server."""

import io

import pytest
from PIL import Image

from tests.helpers.fake_runs import PARAMETERS
from vae_model.results import history
from vae_model.runs import provenance, storage


def test_configuration_hash_ignores_where_a_run_reads_and_writes():
    key = history.configuration_hash(PARAMETERS)
    assert key == history.configuration_hash({**PARAMETERS, "run_id": "x", "data_dir": "/d",
                                             "artifacts_dir": "/elsewhere"})
    assert key != history.configuration_hash({**PARAMETERS, "epochs": 11})
    assert key != history.configuration_hash({**PARAMETERS, "seeds": [3, 4, 5]})


def test_series_flags_a_move_beyond_the_seed_noise_and_only_that(past_runs):
    entries = history.runs(past_runs)
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


def test_history_table_newest_first_with_human_columns_and_the_flag(past_runs):
    chosen = history.series(history.runs(past_runs), history.configuration_hash(PARAMETERS))
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
    assert frame.loc[0, "Packages"] == "TF 2.21.0, Prefect 3.8.8"
    # a move beyond the seed noise can come from another processor: the table says which
    assert frame.loc[0, "Processor"] == "AMD EPYC (family/model 25/1), 2 cores, avx2 fma"
    assert frame.loc[1, "Processor"] == "–"  # a run from before processors were recorded


def test_trend_figure_is_a_png(past_runs):
    chosen = history.series(history.runs(past_runs), history.configuration_hash(PARAMETERS))
    with Image.open(io.BytesIO(history.trend_figure(chosen))) as image:
        assert image.format == "PNG" and image.width > 600


def test_index_lists_every_run_newest_first_with_status_and_links(past_runs):
    path = history.write_index(past_runs, history.runs(past_runs))
    text = path.read_text()
    order = [text.index(run) for run in ("e-upgrade", "c-second", "b-other-config",
                                         "a-first")]
    assert order == sorted(order)
    assert "href='runs/e-upgrade/report.html'" in text
    assert "href='runs/d-killed" not in text and "incomplete" in text
    assert "261.70 ± 0.30" in text


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
