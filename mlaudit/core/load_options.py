"""What the user tells mlaudit about a model that its file cannot say.

Kept free of numpy and pandas: the configuration reads it, and ``mlaudit --help`` must not pay
for the scientific stack.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlaudit.core.findings import JsonValue

# ``module:callable`` (``pkg.models:Net``): Python the user names, and so vouches for.
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

# How a model's raw outputs read when its file cannot say (a PyTorch module returns a tensor).
MODEL_OUTPUTS = ("logits", "probabilities", "regression")


@dataclass(frozen=True)
class LoadOptions:
    """What the user tells the loader that the model file cannot: the architecture a PyTorch
    state dict's weights belong to (``model_class`` = ``pkg.module:Net`` or ``module:factory``,
    called with ``model_kwargs``), how its outputs read (``model_output``), and which data
    column holds the text a text model takes (``text_column``)."""

    model_class: str | None = None
    model_kwargs: Mapping[str, JsonValue] = field(default_factory=dict)
    model_output: str | None = None
    text_column: str | None = None

    def __post_init__(self) -> None:
        if self.model_output is not None and self.model_output not in MODEL_OUTPUTS:
            raise ValueError(f"model_output must be one of {', '.join(MODEL_OUTPUTS)}")


NO_LOAD_OPTIONS = LoadOptions()
