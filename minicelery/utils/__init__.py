"""Small helpers with Celery's module paths."""
