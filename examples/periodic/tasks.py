"""The example of Celery's "Periodic Tasks" guide, with ``minicelery`` where it says
``celery``: entries added from ``on_after_configure`` and from the ``beat_schedule`` setting.

With no broker configured, minicelery uses its embedded Redis (``pip install
'minicelery[embedded]'``); set MINICELERY_BROKER_URL and MINICELERY_RESULT_BACKEND (e.g.
``redis://localhost:6379/0``) to use a Redis server.
"""

from typing import Any

from minicelery import Celery
from minicelery.schedules import crontab, solar

app = Celery("tasks")


@app.on_after_configure.connect
def setup_periodic_tasks(sender: Celery, **kwargs: Any) -> None:
    # test('hello') every 10 seconds.
    sender.add_periodic_task(10.0, test.s("hello"), name="add every 10")

    # The same signature every 30 seconds: its own name keeps it from replacing the first.
    sender.add_periodic_task(30.0, test.s("hello"), name="add every 30")

    # test('world') every 30 seconds; a run not started within 10 seconds is dropped.
    sender.add_periodic_task(30.0, test.s("world"), expires=10)

    # Every Monday at 7:30 in the morning.
    sender.add_periodic_task(
        crontab(hour=7, minute=30, day_of_week=1),
        test.s("Happy Mondays!"),
    )


@app.task
def test(arg: str) -> None:
    print(arg)


@app.task
def add(x: int, y: int) -> int:
    z = x + y
    print(z)
    return z


# The same kind of entry, set in the configuration instead of the hook.
app.conf.beat_schedule = {
    "add-every-30-seconds": {
        "task": "tasks.add",
        "schedule": 30.0,
        "args": (16, 16),
    },
    # Executes at sunset in Melbourne.
    "add-at-melbourne-sunset": {
        "task": "tasks.add",
        "schedule": solar("sunset", -37.81753, 144.96715),
        "args": (16, 16),
    },
}
app.conf.timezone = "UTC"
