"""Foundations every stage uses: errors, findings, hashing, atomic writes,
statistics, the run cache.
"""
