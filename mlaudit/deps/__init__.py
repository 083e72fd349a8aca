"""Dependencies for the MLA6xx rules: requirement files, the installed environment, OSV data."""
