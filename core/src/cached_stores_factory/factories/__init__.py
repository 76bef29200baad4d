"""The factory, at the import path of the original examples."""
