"""cached-stores-factory plugin 'tempfile' (being built)."""
