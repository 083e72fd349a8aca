"""Code analysis for the MLA5xx rules: bandit run in-process, and mlaudit's bandit plugin."""
