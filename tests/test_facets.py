"""Facets of made-up runs (nothing trained): titles name only what varies, and the image
figures' representatives are the lowest seed of each configuration and estimator."""

from tests.helpers import fake_runs
from tests.helpers.fake_runs import ISSUE_13_SWEEP
from vae_model.results import facets


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
