"""Stein's two-stage plan (vae_model.evaluation.plan): its arithmetic by hand, its settings
refused in one line, and its error rates by simulation (vae_model.evaluation.simulation)."""

import math

import numpy as np
import pytest

from tests.helpers import fake_runs
from vae_model import UserInputError
from vae_model.evaluation import plan, simulation, statistics

INTEL_PILOT = [-1.95, -0.55, -0.80]  # a default run's paired -ELBO differences
DRAWS = 100_000  # a rate near 0.05 has a standard error of 0.0007
TOLERANCE = 0.0025


def test_the_seeds_planned_match_the_hand_computed_values():
    sd = float(np.std(INTEL_PILOT, ddof=1))
    assert sd == pytest.approx(0.7467, abs=1e-4)
    # ⌈(4.303 · 0.747 / 0.5)²⌉ = ⌈41.3⌉
    assert plan.seeds_planned(sd, 3, margin=1.0) == 42
    assert plan.seeds_planned(sd, 3, margin=2.0) == 11  # ⌈(4.303 · 0.747 / 1)²⌉ = ⌈10.3⌉
    assert plan.seeds_planned(0.0, 3, margin=1.0) == 3  # zero spread: the pilot is enough
    assert plan.seeds_planned(0.01, 5, margin=1.0) == 5  # never fewer than the pilot
    with pytest.raises(ValueError, match="at least 2 pilot seeds"):
        plan.seeds_planned(0.5, 1, margin=1.0)


def test_the_plan_interval_uses_the_pilots_sd_and_degrees_of_freedom():
    sd = float(np.std(INTEL_PILOT, ddof=1))
    everything = INTEL_PILOT + [0.2, -0.4, -1.0, 0.1]
    mean, ci95 = plan.interval(everything, sd, 3, 0.95)
    half = 4.302653 * sd / math.sqrt(7)  # t_{0.975, 2}, not t_{0.975, 6}
    assert mean == pytest.approx(np.mean(everything))
    assert ci95 == pytest.approx([mean - half, mean + half], abs=1e-5)
    _, ci90 = plan.interval(everything, sd, 3, 0.90)
    assert ci90[1] - mean == pytest.approx(2.919986 * sd / math.sqrt(7), abs=1e-5)


def pair_from(differences, pilot_seeds, max_seeds=50, margin=1.0):
    return statistics.compare(fake_runs.paired_models(differences), margin=margin,
                              pilot={"seeds": pilot_seeds, "max_seeds": max_seeds})


def test_a_capped_plan_says_so_and_decides_from_the_plans_interval():
    comparison = pair_from(INTEL_PILOT + [-1.0, -0.9], [0, 1, 2], max_seeds=5)
    pair = comparison["paired"][0]
    assert pair["plan"] == {
        "procedure": "stein-two-stage", "pilot_seeds": [0, 1, 2],
        "pilot_sd": pytest.approx(0.7467, abs=1e-4), "target_half_width": 0.5,
        "seeds_planned": 42, "seeds_run": 5, "max_seeds": 5, "capped": True, "comparisons": 1,
        "adjustment": None}
    half = 4.302653 * 0.746659 / math.sqrt(5)
    assert pair["ci95"][1] - pair["mean_difference"] == pytest.approx(half, abs=1e-3)
    assert pair["decision"] == "inconclusive"
    assert "capped at 5 seeds by the plan's --max-seeds: half-width 1.44 nats against the " \
           "planned 0.5" in comparison["verdict"]
    assert "add seeds" not in comparison["verdict"]  # a plan is not topped up


def test_a_full_plan_is_decisive_and_every_score_uses_the_plans_interval():
    rng = np.random.default_rng(3)
    pilot = list(rng.normal(-1.0, 0.8, 10))
    n = plan.seeds_planned(float(np.std(pilot, ddof=1)), 10, 1.0)
    differences = pilot + list(rng.normal(-1.0, 0.8, n - 10))
    comparison = pair_from(differences, list(range(10)))
    pair = comparison["paired"][0]
    assert pair["plan"]["seeds_run"] == pair["plan"]["seeds_planned"] == n
    assert pair["ci95"][1] - pair["ci95"][0] <= 1.0  # half-width at most δ/2
    assert pair["decision"] in ("better", "equivalent")
    assert pair["iwae_nll"]["ci95"] == pytest.approx(pair["ci95"])  # IWAE moves with -ELBO here


def test_plan_settings_are_refused_in_one_line():
    base = {"until_decided": True, "seeds": [0, 1, 2], "equivalence_margin": 1.0,
            "max_seeds": 50, "estimators": ["analytic", "monte_carlo"]}
    with pytest.raises(UserInputError, match="needs at least 2 pilot seeds, got 1"):
        plan.check({**base, "seeds": [4]})
    with pytest.raises(UserInputError, match="--max-seeds 2 is fewer than the 3 pilot seeds"):
        plan.check({**base, "max_seeds": 2})
    with pytest.raises(UserInputError, match="compares two estimators: give both"):
        plan.check({**base, "estimators": ["analytic"]})
    plan.check({**base, "until_decided": False, "seeds": [0]})  # no plan: nothing to check


def test_a_plan_once_made_is_fixed_for_its_run():
    base = {"until_decided": True, "seeds": [2, 0, 1], "equivalence_margin": 1.0,
            "max_seeds": 50, "estimators": ["analytic", "monte_carlo"]}
    made = plan.settings(base)
    assert made == {"seeds": [0, 1, 2], "equivalence_margin": 1.0, "max_seeds": 50}
    plan.check(base, made)  # the same plan again: resumed or rerun
    plan.check({**base, "equivalence_margin": 0.5}, None)  # no plan made yet: free to choose
    fixed = "this run's plan was made with --seeds 0-2 --equivalence-margin 1 --max-seeds 50;"
    for changed in ({"equivalence_margin": 0.5}, {"seeds": [0, 1, 2, 3]}, {"max_seeds": 60},
                    {"until_decided": False}):  # a plain run would replace the plan's report
        with pytest.raises(UserInputError, match=fixed):
            plan.check({**base, **changed}, made)


def test_stage_two_adds_the_lowest_seeds_not_in_the_pilot():
    found = {"pilot_seeds": [0, 2, 5], "seeds_planned": 7, "max_seeds": 50}
    assert plan.stage_two_seeds(found) == [1, 3, 4, 6]
    assert plan.stage_two_seeds({**found, "max_seeds": 4}) == [1]
    assert plan.stage_two_seeds({**found, "seeds_planned": 3}) == []
    assert plan.seed_ranges([0, 1, 2, 3, 7, 9, 10]) == "0-3 7 9-10"


@pytest.mark.parametrize("pilot", [3, 5, 8])
@pytest.mark.parametrize("sd", [0.5, 1.0, 1.5])
def test_the_plan_holds_its_error_rates_and_always_decides(pilot, sd):
    at_zero = simulation.stein(0.0, sd, pilot, draws=DRAWS, seed=pilot)
    at_margin = simulation.stein(1.0, sd, pilot, draws=DRAWS, seed=pilot + 1)
    at_half = simulation.stein(0.5, sd, pilot, draws=DRAWS, seed=pilot + 2)
    for rates in (at_zero, at_margin, at_half):
        assert rates["coverage"] >= 0.95 - TOLERANCE
        assert rates["decisive"] == 1.0  # uncapped: better or equivalent, every time
    assert at_zero["better"] <= 0.05 + TOLERANCE  # a false "better"
    assert at_margin["equivalent"] <= 0.05 + TOLERANCE  # a false "equivalent"


def test_bonferroni_holds_each_of_several_comparisons_at_alpha_over_m():
    rates = simulation.stein(0.0, 1.0, 5, draws=DRAWS, comparisons=4)
    assert rates["better"] <= 0.05 / 4 + 0.0015 and rates["decisive"] == 1.0
    assert simulation.stein(1.0, 1.0, 5, draws=DRAWS, comparisons=4)["equivalent"] <= 0.0140


def test_the_recommended_pilot_costs_least_at_this_pipelines_spread():
    for sd in (0.75, 0.9):
        cost = {n0: simulation.stein(0.0, sd, n0, draws=20_000, seed=n0)["mean_seeds"]
                for n0 in (3, 5, 8, 10, 12, 15)}
        # within a seed of the cheapest (10 and 12 trade places between sd 0.75 and 0.9)
        assert cost[plan.RECOMMENDED_PILOT] <= min(cost.values()) + 1.0, cost
        assert cost[3] > 2.5 * cost[plan.RECOMMENDED_PILOT]  # t = 4.30 on 2 df is dear


def test_topping_up_after_a_look_inflates_false_better_and_the_plan_does_not():
    topped = simulation.top_up(0.0, 0.8, pilot=3, draws=DRAWS)
    assert topped["one_look_better"] == pytest.approx(0.05, abs=TOLERANCE)
    assert topped["better"] > 0.075  # two looks at α = 0.05 each
    assert simulation.stein(0.0, 0.8, 3, draws=DRAWS)["better"] <= 0.05 + TOLERANCE


def test_a_sweep_plans_each_configuration_and_decides_at_alpha_over_m():
    records = fake_runs.records(fake_runs.configs(seeds=range(6), latent_sizes=(2, 8)))
    comparison = statistics.compare(records, pilot={"seeds": [0, 1, 2, 3], "max_seeds": 6})
    blocks = comparison["configurations"]
    assert len(blocks) == 2
    for block in blocks:
        found = block["paired"][0]["plan"]
        assert found["comparisons"] == 2 and found["adjustment"] == "bonferroni"
        assert found["pilot_seeds"] == [0, 1, 2, 3] and found["seeds_run"] == 6
        # planned at α/2: t_{1-0.0125, 3} = 4.177 where one comparison would use 3.182
        pilot_sd = found["pilot_sd"]
        assert found["seeds_planned"] == max(4, math.ceil((4.1765 * pilot_sd / 0.5) ** 2))
    assert "Bonferroni" in comparison["verdict"]
    # the sentences and tables show the intervals the decisions are taken from
    pair = blocks[0]["paired"][0]
    assert pair["deciding"]["comparisons"] == 2
    assert pair["deciding"]["ci95"][1] - pair["deciding"]["ci95"][0] > pair["ci95"][1] - \
        pair["ci95"][0]
    assert "CI, Bonferroni over 2" in blocks[0]["verdict"]


def test_the_differences_figure_decides_as_the_report_does_under_a_plan():
    from vae_model.results import figures

    # a pilot of wide spread and later seeds of narrow spread: the plain interval over all
    # seeds excludes 0, the plan's (the pilot's sd) does not
    records = fake_runs.records(fake_runs.configs(seeds=range(6)))
    for seed, difference in enumerate([-2.0, -0.2, -1.2, -1.0, -1.05, -0.95]):
        base = records[f"monte_carlo-s{seed}"]["heldout"]["neg_elbo"]
        records[f"analytic-s{seed}"]["heldout"]["neg_elbo"] = base + difference
    plain = statistics.compare(records)["paired"][0]
    pilot = {"seeds": [0, 1, 2], "max_seeds": 6}
    planned = statistics.compare(records, pilot=pilot)["paired"][0]
    assert plain["decision"] == "better" and planned["decision"] == "inconclusive"
    for found, kwargs in ((plain, {}), (planned, {"pilot": pilot})):
        fig, = figures.build("differences", records, **kwargs)
        labels = [t.get_text() for t in fig.axes[0].texts]
        assert labels == (["analytic KL better"] if found["decision"] == "better"
                          else ["inconclusive"]), labels
