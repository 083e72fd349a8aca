"""An example mlaudit plugin: EXA101, model card missing or incomplete.

mlaudit finds the rule through the ``mlaudit.rules`` entry point in this distribution's
pyproject.toml, and imports this package only when EXA101 is selected.
"""

from mlaudit_example_plugin.model_card import ModelCardRule

__all__ = ["ModelCardRule"]
