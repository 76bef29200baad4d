"""cached-stores-factory plugin 's3' (being built)."""
