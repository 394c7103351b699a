"""Machine facts in a run's provenance (vae_model.runs.provenance): the first processor's model,
family and vector extensions from /proc/cpuinfo (x86, Arm, none), and their one-line description."""

from vae_model.runs import provenance

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx fma avx2 bmi2
processor\t: 1
model name\t: something else
flags\t\t: avx512f
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm sve
"""


def test_the_first_processors_model_family_and_vector_extensions(tmp_path):
    (tmp_path / "cpuinfo").write_text(X86)
    info = provenance.processor(tmp_path / "cpuinfo")
    assert info["model"] == "AMD EPYC 7B13" and info["family"] == "25/1"
    assert info["instructions"] == ["avx2", "fma"]  # the second processor's avx512f not taken
    assert info["cores"] >= 1
    assert provenance.describe(info) == (f"AMD EPYC 7B13 (family/model 25/1), {info['cores']} "
                                      "cores, avx2 fma")


def test_arm_features_and_a_system_without_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text(ARM)
    arm = provenance.processor(tmp_path / "cpuinfo")
    assert arm["instructions"] == ["asimd", "sve"] and "family" not in arm
    unknown = provenance.processor(tmp_path / "missing")
    assert "instructions" not in unknown and unknown["model"]
    assert "avx" not in provenance.describe(unknown)
    assert provenance.describe(None) == "–"


def test_models_trained_on_several_machines_are_listed_per_model():
    from vae_model.runs.provenance import machines_by_model

    cpu = {"model": "Xeon", "cores": 2, "instructions": ["avx2"]}
    one = {"a": {"machines": [{"host": "w1", "processor": cpu}]},
           "b": {"machines": [{"host": "w1", "processor": cpu}]}}
    assert machines_by_model(one) == []  # one machine: the Machine section says it once
    two = {"a": {"machines": [{"host": "w1", "processor": cpu}]},
           "b": {"machines": [{"host": "w1", "processor": cpu},
                              {"host": "w2", "processor": cpu}]},
           "c": {}}
    assert machines_by_model(two) == [
        "a: w1: Xeon, 2 cores, avx2", "b: w1: Xeon, 2 cores, avx2; w2: Xeon, 2 cores, avx2",
        "c: not recorded"]
