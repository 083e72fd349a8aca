"""mlaudit: audit a trained machine-learning model before release."""

__version__ = "0.1.0"
