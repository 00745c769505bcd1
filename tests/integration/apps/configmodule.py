"""A configuration module for ``minicelery --config`` (Celery's option)."""

result_expires = 1234
task_default_queue = "from-config"
