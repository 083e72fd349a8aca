"""The machinery of the MLA7xx data rules: column profiles, quality checks, drift statistics."""
