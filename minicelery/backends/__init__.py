"""Result backends at Celery's path (``celery.backends``); they live in ``minicelery.backend``."""
