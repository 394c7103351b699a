"""The three-way decision (better / equivalent / inconclusive), the seeds that would settle a
comparison, and the verdict sentences built on them."""

import numpy as np
import pytest
from scipy import stats

from vae_model.evaluation import decision, statistics


def pair_of(differences, margin=1.0):
    models = {}
    for seed, d in enumerate(differences):
        for estimator, value in (("analytic", 260.0 + d), ("monte_carlo", 260.0)):
            models[f"{estimator}-s{seed}"] = {
                "estimator": estimator, "seed": seed, "configuration": {},
                "heldout": {"neg_elbo": value, "kl": 6.0, "reconstruction": value - 6.0,
                            "iwae_nll": value - 2.0, "iwae_k": 100}}
    result = statistics.compare(models, margin=margin,
                                add_seeds=lambda seeds: f"ADD {' '.join(map(str, seeds))}")
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
        "models are reused)")


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
    command = decision.add_seeds_command("nightly", {
        "estimators": ["analytic", "monte_carlo"], "seeds": [0, 1, 2], "epochs": 3,
        "latent_sizes": [2], "iwae_k": 100, "artifacts_dir": "/tmp/my runs",
        "equivalence_margin": 1.0, "all_model_figures": True})
    assert command([0, 1, 2, 3]) == ("vae-pipeline run --run-id nightly --seeds 0 1 2 3 "
                                     "--epochs 3 --artifacts-dir '/tmp/my runs' "
                                     "--all-model-figures")
