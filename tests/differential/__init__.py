"""Differential testing of the static scan against the real loaders (issue 13).

The property: whenever mlaudit's load gate would let a file load, every global the real
loader resolves while loading it is among the imports the scan reported.
"""
