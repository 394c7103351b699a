"""Flow parameter types: Prefect validates them before a run starts (and the UI shows them as a
form), so a bad value never costs a training."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, TypeVar

from pydantic import AfterValidator, Field

from vae_model.config import ARCHITECTURES, ESTIMATORS, LIKELIHOODS
from vae_model.run import RUN_ID_PATTERN


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


Estimator = Literal[ESTIMATORS]
Architecture = Literal[ARCHITECTURES]
Likelihood = Literal[LIKELIHOODS]
PositiveInt = Annotated[int, Field(gt=0)]
LearningRate = Annotated[float, Field(gt=0), AfterValidator(_finite)]
Draws = Annotated[int, Field(ge=2)]
Seed = Annotated[int, Field(ge=0)]
T = TypeVar("T")
NonEmpty = Annotated[list[T], Field(min_length=1)]  # an axis of the model grid


def _no_parent_reference(value: str) -> str:
    if ".." in value:
        raise ValueError("'..' is not allowed in a run id")
    return value


RunId = Optional[Annotated[str, Field(pattern=RUN_ID_PATTERN.pattern),
                           AfterValidator(_no_parent_reference)]]
