"""The three-way decision (better / equivalent / inconclusive), the seeds that would settle a
comparison, and the verdict sentences built on them."""

import numpy as np
import pytest
from scipy import stats

from tests.helpers import fake_runs
from vae_model.evaluation import decision, statistics, verdict


def pair_of(differences, margin=1.0):
    result = statistics.compare(fake_runs.paired_models(differences), margin=margin,
                                add_seeds=lambda seeds, until_decided=False: (
                                    f"{'PLAN' if until_decided else 'ADD'} "
                                    f"{' '.join(map(str, seeds))}"))
    return result["paired"][0], result["verdict"]


def test_a_clear_difference_is_better():
    pair, verdict = pair_of([-2.0, -2.2, -1.8, -2.1])
    assert pair["decision"] == "better" and pair["better"] == "analytic"
    assert pair["equivalent"] is False
    assert verdict == ("analytic KL better by 2.03 nats held-out -ELBO (95% CI 1.75 to 2.30, "
                       "4 seeds)")


def test_a_clear_equivalence_is_equivalent_with_its_90_percent_interval():
    differences = [0.1, -0.1, 0.05, 0.0]
    pair, verdict = pair_of(differences)
    half = stats.t.ppf(0.95, 3) * np.std(differences, ddof=1) / 2
    assert pair["ci90"] == pytest.approx([0.0125 - half, 0.0125 + half], abs=1e-9)
    assert pair["decision"] == "equivalent" and pair["equivalent"] is True
    assert pair["better"] is None
    assert verdict == ("equivalent within ±1 nats held-out -ELBO (90% CI -0.09 to +0.11, "
                       "analytic minus monte_carlo, 4 seeds)")
    # the same data with a margin the 90% interval does not fit in
    pair, verdict = pair_of(differences, margin=0.05)
    assert pair["decision"] == "inconclusive" and pair["equivalence_margin"] == 0.05


def test_an_inconclusive_result_says_what_is_not_ruled_out_and_how_to_settle_it():
    pair, verdict = pair_of([-1.95, -0.55, -0.80])
    assert pair["decision"] == "inconclusive"
    assert pair["seeds_needed"] == {"detect": 7, "equivalence": 7}
    assert verdict == (
        "inconclusive with 3 seeds: differences up to 2.95 nats held-out -ELBO are not ruled "
        "out (95% CI -2.95 to +0.75, analytic minus monte_carlo); about 7 seeds would detect "
        "a 1-nat difference; add seeds to this run with `ADD 0 1 2 3 4 5 6` (its trained "
        "models are reused), or let a plan settle it with stated error rates: `PLAN 0 1 2`")


def test_one_seed_has_no_interval_and_no_seed_count():
    pair, verdict = pair_of([0.5])
    assert pair["decision"] == "one seed"
    assert pair["ci90"] is None and pair["seeds_needed"] is None and pair["equivalent"] is False
    assert verdict.startswith("one seed gives no interval over seeds")


def test_zero_spread_is_defined_without_dividing_by_zero():
    pair, _ = pair_of([0.3, 0.3, 0.3])
    assert pair["ci95"] == pytest.approx([0.3, 0.3]) and pair["decision"] == "better"
    assert pair["equivalent"] is True  # significant, and within the margin
    assert pair["seeds_needed"] == {"detect": 2, "equivalence": 2}
    pair, _ = pair_of([0.0, 0.0])
    assert pair["decision"] == "equivalent"


@pytest.mark.parametrize("effect_size, pairs", [(1.0, 10), (0.5, 34)])
def test_seeds_to_detect_match_the_published_paired_t_test_sample_sizes(effect_size, pairs):
    # Cohen's tables: paired t-test, 80% power, two-sided α = 0.05
    assert decision.detect_seeds(sd=1.0 / effect_size, margin=1.0) == pairs


@pytest.mark.parametrize("n, sd", [(5, 0.75), (8, 1.0), (12, 1.0)])
def test_tost_power_matches_a_simulation_of_the_test_itself(n, sd):
    rng = np.random.default_rng(0)
    draws = rng.normal(0.0, sd, size=(400_000, n))  # true difference 0
    mean, s = draws.mean(1), draws.std(1, ddof=1)
    half = stats.t.ppf(0.95, n - 1) * s / np.sqrt(n)
    simulated = np.mean((mean - half > -1.0) & (mean + half < 1.0))
    # the simulation's standard error is below 0.0008
    assert decision.tost_power(n, sd, 1.0) == pytest.approx(simulated, abs=0.003)


def test_seeds_for_equivalence_are_the_fewest_with_80_percent_tost_power():
    n = decision.equivalence_seeds(sd=1.0, margin=1.0)
    assert decision.tost_power(n, 1.0, 1.0) >= 0.8 > decision.tost_power(n - 1, 1.0, 1.0)


def test_the_add_seeds_command_repeats_the_runs_other_settings():
    command = verdict.add_seeds_command("nightly", {
        "estimators": ["analytic", "monte_carlo"], "seeds": [0, 1, 2], "epochs": 3,
        "latent_sizes": [2], "iwae_k": 100, "artifacts_dir": "/tmp/my runs",
        "equivalence_margin": 1.0, "all_model_figures": True})
    assert command([0, 1, 2, 3]) == ("vae-pipeline run --run-id nightly --seeds 0-3 "
                                     "--epochs 3 --artifacts-dir '/tmp/my runs' "
                                     "--all-model-figures")
    # seeds as ranges, and the plan's form: 65 seeds are not 65 numbers, and a pilot larger
    # than the default bound brings its own
    assert command([*range(62), 70, 72, 73], until_decided=True) == (
        "vae-pipeline run --run-id nightly --seeds 0-61 70 72-73 --until-decided --max-seeds 65 "
        "--epochs 3 --artifacts-dir '/tmp/my runs' --all-model-figures")


def test_a_non_finite_score_is_one_line_naming_the_model_in_the_report_and_the_figure():
    from vae_model import UserInputError
    from vae_model.results import figures

    records = fake_runs.records(fake_runs.DEFAULT_RUN)
    records["monte_carlo-s1"]["heldout"]["neg_elbo"] = float("nan")
    with pytest.raises(UserInputError, match=r"^monte_carlo-s1's held-out neg_elbo is nan: a "
                                             r"diverged model cannot be compared"):
        statistics.compare(records)
    with pytest.raises(UserInputError, match="monte_carlo-s1's held-out neg_elbo is nan"):
        figures.build("differences", records)
    records["monte_carlo-s1"]["heldout"]["neg_elbo"] = float("inf")
    with pytest.raises(UserInputError, match="monte_carlo-s1's held-out neg_elbo is inf"):
        statistics.compare(records)


@pytest.mark.parametrize("sd", [0.12, 0.16])
def test_seeds_to_detect_do_not_take_scipys_nan_power_for_enough(sd):
    # scipy's noncentral t gives NaN power with 2 pairs here; the real power is below 0.8
    assert decision.t_test_power(2, sd, 1.0) < 0.8
    assert decision.detect_seeds(sd, 1.0) == 3


def test_the_exact_power_agrees_with_statsmodels_where_both_are_defined():
    for n, sd in ((2, 0.14), (3, 0.28), (10, 1.0)):
        assert decision._t_test_power_exact(n, sd, 1.0) == pytest.approx(
            decision.t_test_power(n, sd, 1.0), abs=1e-6)


def test_the_equivalence_count_is_not_shown_when_the_mean_lies_outside_the_margin():
    from vae_model.results import tables

    pair, _ = pair_of([-1.95, -0.55, -0.80])  # mean -1.10, margin 1
    assert pair["seeds_needed"]["equivalence"] == 7  # computed for a true difference of 0 ...
    assert tables._seeds_needed_cell(pair) == "7 / –"  # ... so not offered as advice
    inside, _ = pair_of([-0.9, 0.3, -0.2])
    assert tables._seeds_needed_cell(inside).split(" / ")[1].isdigit()


def test_a_count_at_the_search_bound_says_more_than():
    _, text = pair_of([-40.0, 40.0, 5.0], margin=0.01)
    assert f"more than {decision.MAX_SEEDS} seeds would be needed to detect" in text
    assert "about 100000" not in text


def test_a_margin_that_is_not_positive_is_refused_from_python_too():
    for margin in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="equivalence margin must be a finite number > 0"):
            pair_of([0.1, 0.2], margin=margin)
        with pytest.raises(ValueError, match="equivalence margin"):
            decision.decide(0.1, [0.0, 0.2], [0.05, 0.15], 0.1, margin)


def test_identical_differences_warn_that_the_models_may_not_be_independent():
    _, text = pair_of([0.3, 0.3, 0.3])
    assert "all 3 differences are identical, which usually means the two estimators' models " \
           "were not trained independently" in text
    _, text = pair_of([0.3, 0.2, 0.3])
    assert "identical" not in text
