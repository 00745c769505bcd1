"""A workflow runs on its tasks' app, not on whichever app is current: a second app with
``task_always_eager`` must not make the first app's workflows eager."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from minicelery import Celery, chain, chord, group, signature
from minicelery.result import EagerResult


@pytest.fixture
def apps(make_app: Callable[..., Celery]) -> tuple[Celery, Any, Any]:
    """App A (not eager, with tasks ``add`` and ``tsum``), then app B, eager and current."""
    first = make_app(set_as_current=False)

    @first.task(shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @first.task(shared=False)
    def tsum(values: list[int]) -> int:
        return sum(values)

    make_app(task_always_eager=True, broker="memory://other-eager", backend="memory://other-eager")
    return first, add, tsum


def published(app: Celery) -> int:
    return sum(app.broker.queue_sizes(["celery"]).values())


@pytest.mark.parametrize(
    "build",
    [
        lambda add, tsum: chain(add.s(1, 2), add.s(3)),
        lambda add, tsum: add.s(1, 2) | add.s(3),
        lambda add, tsum: group(add.s(1, 2), add.s(3, 4)),
        lambda add, tsum: chord([add.s(1, 2), add.s(3, 4)], tsum.s()),
        lambda add, tsum: group(add.s(1, 2), add.s(3, 4)) | tsum.s(),
        lambda add, tsum: chain(group(add.s(1, 2), add.s(3, 4)), tsum.s()),
        lambda add, tsum: add.s(1, 2),
    ],
    ids=["chain", "pipe", "group", "chord", "group-pipe", "chain-group", "sig"],
)
def test_workflow_is_sent_by_its_tasks_app(apps: tuple[Celery, Any, Any], build: Any) -> None:
    first, add, tsum = apps
    workflow = build(add, tsum)
    assert workflow.app is first
    result = workflow.apply_async()
    assert not isinstance(result, EagerResult)
    assert published(first) >= 1


def test_signature_delay_uses_the_tasks_app(apps: tuple[Celery, Any, Any]) -> None:
    first, add, _ = apps
    result = add.s(1, 2).delay()
    assert not isinstance(result, EagerResult)
    assert result.app is first
    assert published(first) == 1


def test_signature_by_name_with_app_uses_that_app(apps: tuple[Celery, Any, Any]) -> None:
    first, add, _ = apps
    result = signature(add.name, args=(1, 2), app=first).delay()
    assert not isinstance(result, EagerResult)
    assert published(first) == 1


def test_the_eager_apps_own_workflows_still_run_eagerly(make_app: Callable[..., Celery]) -> None:
    eager = make_app(task_always_eager=True, set_as_current=False)

    @eager.task(shared=False)
    def mul(x: int, y: int) -> int:
        return x * y

    make_app()  # another app, not eager, is current
    assert chain(mul.s(2, 3), mul.s(4)).apply_async().get() == 24
    assert group(mul.s(1, 2), mul.s(3, 4)).apply_async().get() == [2, 12]
