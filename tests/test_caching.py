"""A stage's cache key follows the source of every vae_model module it runs, however deep."""

from tasks import caching


def write(directory, name, text):
    path = directory.joinpath(*name.split("."))
    path = path / "__init__.py" if name in ("training", "model") else path.with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_source_hash_covers_imported_modules_but_does_not_follow_stages(tmp_path, monkeypatch):
    monkeypatch.setattr(caching, "_PACKAGE_DIR", tmp_path)
    write(tmp_path, "training", "from vae_model.training.loop import fit\n")
    write(tmp_path, "training.loop", "from vae_model import UserInputError\n"
                                     "from vae_model.training import fast_step\n"
                                     "from vae_model.model.networks import VAE\n")
    write(tmp_path, "training.fast_step", "def step():\n    from vae_model.model import (\n"
                                          "        objectives)\n")
    write(tmp_path, "model", "")
    write(tmp_path, "model.networks", "x = 1\n")
    write(tmp_path, "model.objectives", "y = 1\n")
    write(tmp_path, "stages", "def figures():\n    import vae_model.results.figures\n")
    write(tmp_path, "results.figures", "z = 1\n")
    assert caching.vae_model_imports("training") == {"training.loop"}
    assert caching.vae_model_imports("training.loop") == {"training.fast_step", "model.networks"}
    assert caching.vae_model_imports("training.fast_step") == {"model.objectives"}
    assert caching.vae_model_imports("stages") == {"results.figures"}

    def version(*modules):
        caching.source_hash.cache_clear()
        return caching.source_hash(*modules)

    before = version("training")
    write(tmp_path, "model.objectives", "y = 2\n")  # three imports deep
    assert version("training") != before
    before, with_stages = version("training"), version("training", "stages")
    write(tmp_path, "results.figures", "z = 2\n")  # imported only inside the stages' functions
    assert version("training", "stages") == with_stages
    write(tmp_path, "stages", "def figures():\n    pass\n")
    assert version("training", "stages") != with_stages
    caching.source_hash.cache_clear()


def test_cache_keys_computed_in_two_threads_at_once_parse_the_source_safely(monkeypatch):
    """CPython 3.11's parser is not thread-safe; a garbage collection that switches threads
    in the middle of a parse (as TensorFlow's finalizers do) makes it fail now and then."""
    import gc
    import threading
    import time

    from tasks import caching

    modules = sorted(p.relative_to(caching._PACKAGE_DIR).with_suffix("").as_posix()
                     .replace("/", ".").removesuffix(".__init__")
                     for p in caching._PACKAGE_DIR.rglob("*.py"))
    errors = []

    def parse_all():
        for _ in range(10):
            for module in modules:
                try:
                    caching.vae_model_imports(module)
                except SystemError as err:
                    errors.append(err)

    switch = lambda phase, info: time.sleep(0.0001)  # noqa: E731
    threshold = gc.get_threshold()
    gc.set_threshold(50)
    gc.callbacks.append(switch)
    try:
        threads = [threading.Thread(target=parse_all) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.callbacks.remove(switch)
        gc.set_threshold(*threshold)
    assert errors == []
