"""Developer tools that work on the repository's models (not part of the deployed engine)."""
