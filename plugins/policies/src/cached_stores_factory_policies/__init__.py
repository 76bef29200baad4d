"""cached-stores-factory plugin 'policies' (being built)."""
