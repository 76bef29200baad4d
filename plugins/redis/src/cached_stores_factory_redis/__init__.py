"""cached-stores-factory plugin 'redis' (being built)."""
