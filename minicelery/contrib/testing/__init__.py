"""Helpers for testing code that uses minicelery: test apps, embedded workers and the
``Manager`` of Celery's integration tests, under Celery's ``celery.contrib.testing`` paths."""
