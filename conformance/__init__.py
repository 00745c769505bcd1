"""Conformance runs: Celery's own integration suite (from its published source
distribution, fetched on demand) run against minicelery through an import alias."""
