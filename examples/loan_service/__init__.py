"""The loan-approval service the demo model belongs to: training job and scoring API.

Example code for `make demo`: mlaudit reads it with bandit (MLA501, MLA502), never runs it.
It carries two mistakes an audit should catch: the training config is read with
``yaml.load`` and the API loads uploaded models with ``joblib.load``.
"""
