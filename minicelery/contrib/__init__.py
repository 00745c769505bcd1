"""Optional extras under Celery's ``celery.contrib`` paths: the pytest plugin and the
testing helpers it is built on."""
