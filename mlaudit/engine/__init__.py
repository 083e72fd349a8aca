"""Runs the selected rules in pipeline order: discovery, option checks,
the load gate, isolation, budgets.
"""
