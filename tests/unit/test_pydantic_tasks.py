"""``@app.task(pydantic=True)``: models in, models validated, model results stored as their
JSON dump, and models passed by the caller sent as their dump (Celery 5.7's behaviour)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from minicelery import Celery, Task, states
from minicelery.exceptions import SerializationError
from minicelery.worker.executor import execute_message
from tests.unit.conftest import ACCEPT_JSON
from tests.unit.test_executor import sent


class Numbers(BaseModel):
    x: int
    y: int


class Total(BaseModel):
    result: int


@pytest.fixture
def add(app: Celery) -> Task[Any, Any]:
    @app.task(pydantic=True, name="proj.add_models")
    def add(data: Numbers, scale: Numbers | None = None) -> Total:
        assert isinstance(data, Numbers)
        factor = scale.x if scale is not None else 1
        return Total(result=(data.x + data.y) * factor)

    return add


def on_worker(app: Celery, task: Task[Any, Any], *args: Any, **kwargs: Any) -> Any:
    """Send ``task`` with these arguments and run what was sent, as a worker does."""
    task.apply_async(args, kwargs)
    (message,) = sent(app)
    outcome = execute_message(app, message, "w@h", "celery", ACCEPT_JSON)
    return outcome, message


def test_arguments_are_validated_into_models_and_results_dumped(
    app: Celery, add: Task[Any, Any]
) -> None:
    outcome, _ = on_worker(app, add, {"x": 1, "y": 2}, scale={"x": 10, "y": 0})
    assert outcome.state == states.SUCCESS, outcome.exc
    assert outcome.retval == {"result": 30}
    assert app.backend.get_meta(_.id)["result"] == {"result": 30}


def test_models_passed_by_the_caller_are_sent_as_their_dump(
    app: Celery, add: Task[Any, Any]
) -> None:
    outcome, message = on_worker(app, add, Numbers(x=2, y=2))
    assert message.decode_body(ACCEPT_JSON)[0] == [{"x": 2, "y": 2}]
    assert outcome.retval == {"result": 4}
    add.s(Numbers(x=3, y=3)).delay()
    add.apply_async(kwargs={"data": Numbers(x=4, y=4)})
    bodies = [m.decode_body(ACCEPT_JSON)[:2] for m in sent(app)]
    assert bodies == [([{"x": 3, "y": 3}], {}), ([], {"data": {"x": 4, "y": 4}})]


def test_a_value_that_is_not_the_model_fails_the_task(app: Celery, add: Task[Any, Any]) -> None:
    outcome, _ = on_worker(app, add, {"x": "not a number", "y": 2})
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.exc, ValidationError)


def test_string_annotations_are_resolved(app: Celery) -> None:
    """This module's annotations are strings (``from __future__ import annotations``)."""
    @app.task(pydantic=True, name="proj.add_strings")
    def add_strings(data: Numbers) -> Total:
        return Total(result=data.x + data.y)

    outcome, _ = on_worker(app, add_strings, {"x": 4, "y": 5})
    assert outcome.retval == {"result": 9}
    assert add_strings.apply(({"x": 1, "y": 1},)).get() == {"result": 2}


def test_bound_tasks_validate_their_own_arguments(app: Celery) -> None:
    @app.task(bind=True, pydantic=True, name="proj.bound_models")
    def bound(self: Task[Any, Any], data: Numbers) -> Total:
        return Total(result=data.x * data.y)

    outcome, message = on_worker(app, bound, Numbers(x=3, y=4))
    assert message.decode_body(ACCEPT_JSON)[0] == [{"x": 3, "y": 4}]
    assert outcome.retval == {"result": 12}


def test_without_pydantic_a_model_argument_cannot_be_sent(app: Celery) -> None:
    @app.task(name="proj.plain_models")
    def plain(data: Numbers) -> int:
        return data.x

    with pytest.raises(SerializationError):
        plain.delay(Numbers(x=1, y=1))
