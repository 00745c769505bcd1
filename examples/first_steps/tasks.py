"""Celery's "First Steps" tasks module, with ``minicelery`` where it says ``celery``.

With no broker configured, minicelery uses its embedded Redis (``pip install
'minicelery[embedded]'``); to use a Redis server instead, pass ``broker=`` and ``backend=``
as in Celery's guide, e.g. ``Celery('tasks', broker='redis://localhost:6379/0',
backend='redis://localhost:6379/0')``, or set MINICELERY_BROKER_URL and
MINICELERY_RESULT_BACKEND.
"""

from minicelery import Celery

app = Celery("tasks")


@app.task
def add(x: int, y: int) -> int:
    return x + y
