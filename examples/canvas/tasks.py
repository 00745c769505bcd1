"""The tasks of Celery's "Canvas: Designing Work-flows" guide, with ``minicelery`` where it
says ``celery``. Configure the broker as in First Steps: embedded Redis by default, or
MINICELERY_BROKER_URL and MINICELERY_RESULT_BACKEND pointing at a Redis server.
"""

from minicelery import Celery

app = Celery("tasks")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def raising_task() -> None:
    raise ValueError("something something")
