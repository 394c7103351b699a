"""Flow parameter types: Prefect validates them before a run starts (and the UI shows them as a
form), so a bad value never costs a training."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, TypeVar

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from vae_model import UserInputError
from vae_model.model.config import ARCHITECTURES, ESTIMATORS, LIKELIHOODS
from vae_model.runs.directory import RUN_ID_PATTERN, check_run_id


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


Estimator = Literal[ESTIMATORS]
Architecture = Literal[ARCHITECTURES]
Likelihood = Literal[LIKELIHOODS]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveNumber = Annotated[float, Field(gt=0), AfterValidator(_finite)]
LearningRate = PositiveNumber
Margin = PositiveNumber  # the equivalence margin, nats per image
Draws = Annotated[int, Field(ge=2)]
Seed = Annotated[int, Field(ge=0)]
T = TypeVar("T")
NonEmpty = Annotated[list[T], Field(min_length=1)]  # an axis of the model grid


RunId = Optional[Annotated[str, Field(pattern=RUN_ID_PATTERN.pattern),
                           AfterValidator(check_run_id)]]
# The flow's parameters that no ModelConfig checks, as the flow declares them (a test holds
# the two to each other): the command line checks its flags with these.
UNCHECKED_BY_MODELS = {"seeds": NonEmpty[Seed], "iwae_k": PositiveInt, "gradient_draws": Draws,
                       "equivalence_margin": Margin, "max_seeds": PositiveInt}


def check(parameters: dict) -> None:
    """Refuse, in one line naming its flag, a value of ``parameters`` that the flow's own
    parameter type would refuse once the run had started."""
    for name, kind in UNCHECKED_BY_MODELS.items():
        try:
            TypeAdapter(kind).validate_python(parameters[name])
        except ValidationError as err:
            problem = err.errors()[0]
            bound = {"greater_than_equal": ">=", "greater_than": ">"}.get(problem["type"])
            rule = (f"must be {bound} {next(iter(problem['ctx'].values()))}" if bound
                    else problem["msg"].lower())
            raise UserInputError(f"--{name.replace('_', '-')} {rule}, got {problem['input']!r}") \
                from None
