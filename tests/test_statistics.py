import json
import math

import numpy as np
import pandas as pd
import pytest

from vae_model.evaluation import decision, statistics

# Measured held-out -ELBO differences (analytic minus monte_carlo) for seeds 0, 1, 2.
DIFFERENCES = [-1.17, -2.23, 0.49]
# By hand: mean -2.91 / 3 = -0.97; squared deviations 0.04 + 1.5876 + 2.1316 = 3.7592, so
# sd = sqrt(3.7592 / 2) = 1.370985; half-width t_{0.975,2} sd / sqrt(3) = 4.302653 * 0.791539.
MEAN, SD = -0.97, math.sqrt(3.7592 / 2)
HALF_WIDTH = 4.302653 * SD / math.sqrt(3)


def test_t_quantiles_match_the_tables():
    assert decision.t_quantile(0.975, 2) == pytest.approx(4.3027, abs=1e-4)
    assert decision.t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert decision.t_quantile(0.975, 9) == pytest.approx(2.2622, abs=1e-4)


def test_summarize_uses_the_sample_standard_deviation():
    assert statistics.summarize(DIFFERENCES) == {
        "mean": pytest.approx(MEAN), "std": pytest.approx(1.370985, abs=1e-6), "n": 3}
    assert statistics.summarize([2.5]) == {"mean": 2.5, "std": None, "n": 1}
    assert statistics.summarize([]) == {"mean": None, "std": None, "n": 0}


def test_t_interval_of_the_measured_differences():
    mean, (lo, hi) = statistics.t_interval(DIFFERENCES)
    assert mean == pytest.approx(MEAN)
    assert HALF_WIDTH == pytest.approx(3.4057, abs=1e-4)
    assert (lo, hi) == (pytest.approx(MEAN - HALF_WIDTH), pytest.approx(MEAN + HALF_WIDTH))
    assert statistics.t_interval([1.0, 3.0], confidence=0.9)[1] == pytest.approx(
        [2 - 6.3138, 2 + 6.3138], abs=1e-3)  # t_{0.95,1} = 6.3138, sd/sqrt(2) = 1
    assert statistics.t_interval([4.0]) == (4.0, None)


def test_paired_per_image_standard_error_by_hand():
    a, b = [10.0, 12.0, 11.0, 15.0], [9.0, 12.5, 10.0, 12.0]
    # differences 1, -0.5, 1, 3: mean 1.125; squared deviations 0.015625 + 2.640625 +
    # 0.015625 + 3.515625 = 6.1875; sd = sqrt(6.1875 / 3) = 1.436141; stderr = sd / 2.
    assert statistics.paired_per_image(a, b) == {
        "mean_difference": pytest.approx(1.125), "stderr": pytest.approx(0.7180703),
        "n": 4}
    with pytest.raises(ValueError, match="same images"):
        statistics.paired_per_image(a, b[:3])


def model(estimator, seed, neg_elbo, iwae_nll=None, reference_nll=None, **configuration):
    heldout = {"neg_elbo": neg_elbo, "kl": 6.0, "reconstruction": neg_elbo - 6.0,
               "iwae_nll": neg_elbo - 2.0 if iwae_nll is None else iwae_nll, "iwae_k": 100}
    if reference_nll is not None:
        heldout.update(reference_nll=reference_nll, reference_nll_error=0.01)
    return {"estimator": estimator, "seed": seed, "heldout": heldout,
            "configuration": {"latent_size": 2, "architecture": "mlp", **configuration}}


def measured_models(**configuration):
    analytic = [258.67, 260.96, 259.89]
    monte_carlo = [a - d for a, d in zip(analytic, DIFFERENCES)]
    suffix = "".join(f"-{v}" for v in configuration.values())
    models = {}
    for seed, (a, m) in enumerate(zip(analytic, monte_carlo)):
        models[f"analytic{suffix}-s{seed}"] = model("analytic", seed, a, **configuration)
        models[f"monte_carlo{suffix}-s{seed}"] = model("monte_carlo", seed, m, **configuration)
    return models


def test_unclear_difference_gives_the_interval_and_no_winner():
    result = statistics.compare(measured_models())
    json.dumps(result, allow_nan=False)
    pair, = result["paired"]
    assert pair["estimators"] == ["analytic", "monte_carlo"] and pair["seeds"] == [0, 1, 2]
    assert pair["differences"] == pytest.approx(DIFFERENCES)
    assert pair["mean_difference"] == pytest.approx(MEAN)
    assert pair["std"] == pytest.approx(SD)
    assert pair["ci95"] == pytest.approx([MEAN - HALF_WIDTH, MEAN + HALF_WIDTH])
    assert pair["iwae_nll"]["mean_difference"] == pytest.approx(MEAN)
    assert pair["better"] is None
    assert [s["per_image_stderr"] for s in pair["per_seed"]] == [None, None, None]
    assert pair["decision"] == "inconclusive" and pair["equivalent"] is False
    assert pair["equivalence_margin"] == 1.0
    assert pair["seeds_needed"] == {"detect": 17, "equivalence": 18}
    assert pair["iwae_nll"]["decision"] == "inconclusive"
    assert result["verdict"] == (
        "inconclusive with 3 seeds: differences up to 4.38 nats held-out -ELBO are not ruled "
        "out (95% CI -4.38 to +2.44, analytic minus monte_carlo); about 17 seeds would detect "
        "a 1-nat difference")
    analytic = result["by_estimator"]["analytic"]
    assert analytic["seeds"] == [0, 1, 2]
    assert analytic["models"] == ["analytic-s0", "analytic-s1", "analytic-s2"]
    assert analytic["neg_elbo"]["mean"] == pytest.approx((258.67 + 260.96 + 259.89) / 3)
    assert analytic["kl"] == {"mean": 6.0, "std": 0.0, "n": 3}
    assert "reference_nll" not in analytic


def test_clear_difference_names_the_better_estimator_with_its_interval():
    models = {}
    for seed, (a, d) in enumerate(zip([258.0, 259.0, 260.0], [-0.7, -1.05, -1.4])):
        models[f"monte_carlo-s{seed}"] = model("monte_carlo", seed, a - d)  # seen first
        models[f"analytic-s{seed}"] = model("analytic", seed, a)
    result = statistics.compare(models)
    pair, = result["paired"]
    assert pair["estimators"] == ["analytic", "monte_carlo"]
    # mean -1.05, sd 0.35, half-width 4.302653 * 0.35 / sqrt(3) = 0.869446
    assert pair["ci95"] == pytest.approx([-1.05 - 0.869446, -1.05 + 0.869446], abs=1e-5)
    assert pair["better"] == "analytic"
    assert result["verdict"] == ("analytic KL better by 1.05 nats held-out -ELBO "
                                 "(95% CI 0.18 to 1.92, 3 seeds)")
    flipped = statistics.compare({name: {**m, "estimator": {"analytic": "monte_carlo",
                                                             "monte_carlo": "analytic"}[
        m["estimator"]]} for name, m in models.items()})
    assert flipped["verdict"] == ("monte_carlo KL better by 1.05 nats held-out -ELBO "
                                  "(95% CI 0.18 to 1.92, 3 seeds)")


def per_image_frame(neg_elbo, order=None):
    index = np.arange(len(neg_elbo)) if order is None else np.asarray(order)
    values = np.asarray(neg_elbo, dtype=float)[index]
    return pd.DataFrame({"index": index, "neg_elbo": values, "iwae_nll": values - 1.0})


def test_one_seed_gives_no_interval_and_says_so():
    models = {"analytic-s0": model("analytic", 0, 11.0),
              "monte_carlo-s0": model("monte_carlo", 0, 12.125)}
    per_image = {"analytic-s0": per_image_frame([10.0, 12.0, 11.0, 15.0]),
                 # rows in another order: matched by index, not by position
                 "monte_carlo-s0": per_image_frame([9.0, 12.5, 10.0, 12.0], order=[3, 1, 0, 2])}
    result = statistics.compare(models, per_image)
    pair, = result["paired"]
    assert pair["ci95"] is None and pair["std"] is None and pair["better"] is None
    assert pair["per_seed"] == [{"seed": 0, "difference": pytest.approx(-1.125),
                                 "per_image_stderr": pytest.approx(0.7180703)}]
    assert result["verdict"] == (
        "one seed gives no interval over seeds: analytic minus monte_carlo held-out -ELBO is "
        "-1.12 nats for seed 0 (per-image standard error 0.72), which says nothing about "
        "seed-to-seed variation: run more seeds")


def test_one_estimator_has_nothing_to_compare():
    result = statistics.compare({"analytic-s0": model("analytic", 0, 258.0),
                                 "analytic-s1": model("analytic", 1, 259.0)})
    assert result["paired"] == []
    assert result["verdict"] == "only the analytic KL was trained (2 seeds): nothing to compare"


def test_reference_nll_gives_the_gaps():
    models = {f"{e}-s{s}": model(e, s, 260.0 + s + (e == "monte_carlo"), iwae_nll=258.0 + s,
                                 reference_nll=257.0 + s + 0.5 * (e == "monte_carlo"))
              for e in ("analytic", "monte_carlo") for s in (0, 1)}
    result = statistics.compare(models)
    analytic = result["by_estimator"]["analytic"]
    assert analytic["reference_nll"] == {"mean": 257.5, "std": pytest.approx(math.sqrt(0.5)),
                                         "n": 2}
    assert analytic["inference_gap"]["mean"] == pytest.approx(3.0)
    assert analytic["iwae_gap"]["mean"] == pytest.approx(1.0)
    assert result["by_estimator"]["monte_carlo"]["inference_gap"]["mean"] == pytest.approx(3.5)
    assert result["paired"][0]["reference_nll"]["mean_difference"] == pytest.approx(-0.5)


def test_models_are_grouped_by_configuration():
    models = {**measured_models(latent_size=8), **measured_models(architecture="conv")}
    # a clear win in the conv configuration
    for seed, shift in enumerate([1.0, 1.1, 0.9]):
        models[f"analytic-conv-s{seed}"]["heldout"]["neg_elbo"] = (
            models[f"monte_carlo-conv-s{seed}"]["heldout"]["neg_elbo"] - shift)
    result = statistics.compare(models)
    json.dumps(result, allow_nan=False)
    first, second = result["configurations"]
    assert first["configuration"] == {"latent_size": 8, "architecture": "mlp"}
    assert second["configuration"] == {"latent_size": 2, "architecture": "conv"}
    assert first["by_estimator"]["analytic"]["models"] == [
        "analytic-8-s0", "analytic-8-s1", "analytic-8-s2"]
    assert second["paired"][0]["better"] == "analytic"
    assert first["verdict"].startswith("inconclusive with 3 seeds")
    assert second["verdict"].startswith("analytic KL better by 1.00 nats")
    assert result["by_estimator"] == first["by_estimator"]  # top level: first configuration
    assert result["paired"] == first["paired"]
    assert result["configuration"] == first["configuration"]
    assert result["verdict"] == ("analytic better in 1 of 2 configurations, "
                                 "inconclusive in 1")


def test_duplicate_seed_in_a_configuration_is_refused():
    models = {"a": model("analytic", 0, 1.0), "b": model("analytic", 0, 2.0),
              "c": model("monte_carlo", 0, 1.0)}
    with pytest.raises(ValueError, match="two analytic models with seed 0"):
        statistics.compare(models)
