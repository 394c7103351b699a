"""The image figures of made-up runs, drawn with untrained networks: one seed per configuration
and estimator, unless all models are asked for."""

from tests.helpers import fake_runs
from tests.helpers.data import synthetic_arrays
from vae_model.model.networks import VAE
from vae_model.results import model_figures


def test_image_figures_show_one_seed_per_configuration_unless_all_models(tmp_path):
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
