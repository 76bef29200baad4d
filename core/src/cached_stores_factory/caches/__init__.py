"""Cache policies, at the import paths of the original examples (the `policies` plugin)."""
