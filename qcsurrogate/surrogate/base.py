"""The abstract `Surrogate`: a learned one-step map `state(t) -> state(t + dt)`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from ..state import State


class Surrogate(torch.nn.Module, ABC):
    """A network that advances a State by one fixed step dt."""

    name: ClassVar[str]

    @abstractmethod
    def forward(self, state: State) -> State:
        """Predict the state one step later."""
