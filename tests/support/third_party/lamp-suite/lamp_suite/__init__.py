"""A third-party suite written from docs/plugins.md only."""
