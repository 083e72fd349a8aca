"""Serving readiness (MLA8xx): what the model costs to load and query, and what the serving
code around it exposes.

``resources`` measures the load (time, memory) where the model is loaded; ``timing`` times
single-row predictions and batches; ``endpoints`` and ``bandit_tests`` read serving code
statically (never importing it) as bandit tests.
"""
