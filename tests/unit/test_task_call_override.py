"""A ``Task`` base class overriding ``__call__`` is honoured by ``apply()`` and eager mode,
with the request still current inside (Celery's Flask guide pattern)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from minicelery import Celery
from tests.integration.apps import compat


@pytest.fixture
def compat_app(make_app: object) -> Iterator[Celery]:
    app = compat.app
    previous = app.conf.task_always_eager
    yield app
    app.conf.task_always_eager = previous


def test_apply_enters_through_the_base_call(compat_app: Celery) -> None:
    result = compat.in_context.apply((5,), task_id="tid-1")
    assert result.get() == ["inside", 5, "tid-1"]


def test_always_eager_enters_through_the_base_call(compat_app: Celery) -> None:
    compat_app.conf.task_always_eager = True
    assert compat.in_context.delay(7).get()[:2] == ["inside", 7]


def test_a_base_call_wrapping_super_keeps_the_request(compat_app: Celery) -> None:
    state, task_id, called_directly = compat.in_super_context.apply(task_id="tid-2").get()
    assert (state, task_id, called_directly) == ("via-super", "tid-2", False)


def test_calling_the_task_directly_still_works(compat_app: Celery) -> None:
    assert compat.in_context(3)[:2] == ["inside", 3]
    state, _, called_directly = compat.in_super_context()
    assert (state, called_directly) == ("via-super", True)


def test_task_cls_by_name_is_the_base_of_every_task(make_app: object) -> None:
    from minicelery.exceptions import ImproperlyConfigured

    spec = "tests.integration.apps.compat:ContextTask"
    app = Celery("named", broker="memory://named", task_cls=spec, set_as_current=False)

    @app.task(shared=False)
    def where() -> str | None:
        return compat.app_context.get()

    assert where() == "inside" and where.apply().get() == "inside"
    assert Celery("dotted", task_cls="tests.integration.apps.compat.ContextTask",
                  set_as_current=False).Task is compat.ContextTask  # fmt: skip
    with pytest.raises(ImproperlyConfigured, match="cannot be imported"):
        Celery("bad", task_cls="no.such:Thing", set_as_current=False)
