"""Celery's ``celery.apps``: programs built on the application (``multi``'s nodes)."""
