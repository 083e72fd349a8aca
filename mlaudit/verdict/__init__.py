"""From findings to a verdict: scores, the gate, waivers."""
