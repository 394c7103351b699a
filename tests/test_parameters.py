"""The flow's parameter types (flows.parameters), which the command line checks its flags with."""

import typing

from flows.parameters import UNCHECKED_BY_MODELS
from flows.pipeline import vae_pipeline


def test_the_command_line_checks_its_flags_with_the_flows_own_parameter_types():
    declared = typing.get_type_hints(vae_pipeline.fn, include_extras=True)
    assert {name: declared[name] for name in UNCHECKED_BY_MODELS} == UNCHECKED_BY_MODELS
