"""What proves years later what was checked: signatures, archives,
regression against a baseline.
"""

# The signed envelope's file name beside report.json (in-toto attestation, DSSE-wrapped).
ENVELOPE_NAME = "report.intoto.json"
