"""A stage's cache key follows the source of every vae_model module it runs, however deep."""

from tasks import caching


def write(directory, name, text):
    (directory / f"{name}.py").write_text(text)


def test_code_version_covers_imported_modules_but_does_not_follow_run(tmp_path, monkeypatch):
    monkeypatch.setattr(caching, "_PACKAGE_DIR", tmp_path)
    write(tmp_path, "training", "from vae_model import UserInputError, fast_step\n"
                                "from vae_model.networks import VAE\n")
    write(tmp_path, "fast_step", "def step():\n    from vae_model import (\n        objectives)\n")
    write(tmp_path, "networks", "x = 1\n")
    write(tmp_path, "objectives", "y = 1\n")
    write(tmp_path, "run", "def figures():\n    from vae_model import figures\n")
    write(tmp_path, "figures", "z = 1\n")
    assert caching.vae_model_imports("training") == {"fast_step", "networks"}
    assert caching.vae_model_imports("fast_step") == {"objectives"}

    def version(*modules):
        caching.code_version.cache_clear()
        return caching.code_version(*modules)

    before, with_run = version("training"), version("training", "run")
    write(tmp_path, "objectives", "y = 2\n")  # two imports deep
    assert version("training") != before
    before, with_run = version("training"), version("training", "run")
    write(tmp_path, "figures", "z = 2\n")  # imported only inside run's functions
    assert version("training", "run") == with_run
    write(tmp_path, "run", "def figures():\n    pass\n")
    assert version("training", "run") != with_run
    caching.code_version.cache_clear()
