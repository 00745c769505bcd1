"""What a failing chord header does, as in Celery 5.7: ``get()`` on the chord raises the
header task's own error, and the errbacks linked to the chord (to a single body, to the
tasks of a group body, to the body of a chord in it) are called. Run on memory:// by
executing the sent messages in this process."""

from __future__ import annotations

from typing import Any

import pytest

from minicelery import Celery, chord, group
from tests.unit.test_canvas import drain, tasks  # noqa: F401  (fixture)


def test_on_error_returns_the_signature_not_the_errback(
    app: Celery, tasks: dict[str, Any]  # noqa: F811
) -> None:
    fail, record = tasks["fail"], tasks["record"]
    failing = fail.si().on_error(record.s())
    assert failing.task == "t.fail"
    promised = failing.freeze()
    failing.delay()
    drain(app)
    assert promised.failed()
    assert [seen[0] for seen in tasks["seen"]] == [promised.id]


def test_get_raises_the_header_error_when_the_header_fails_while_waiting(
    app: Celery,
    tasks: dict[str, Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add, fail, xsum = tasks["add"], tasks["fail"], tasks["xsum"]
    result = chord([add.s(1, 1), fail.s()], xsum.s()).apply_async()
    wait_for = app.backend.wait_for

    def header_fails_meanwhile(*args: Any, **kwargs: Any) -> Any:
        drain(app)  # the header fails (and the chord with it) while get() waits
        return wait_for(*args, **kwargs)

    monkeypatch.setattr(app.backend, "wait_for", header_fails_meanwhile)
    with pytest.raises(ValueError, match="something something"):
        result.get(timeout=1)



@pytest.fixture
def echo(app: Celery) -> tuple[Any, list[Any]]:
    """An old-style errback (a task given the failed task's id) that records what it got:
    ``echo.si(label)`` records the label, ``echo.s()`` the failed task's id."""
    got: list[Any] = []

    @app.task(name="t.echo", shared=False)
    def echo_task(value: Any) -> None:
        got.append(value)

    return echo_task, got


def test_group_link_error_passes_the_failed_task_id_to_an_old_style_errback(
    app: Celery, tasks: dict[str, Any], echo: Any  # noqa: F811
) -> None:
    echo_task, got = echo
    failing = tasks["fail"].s()
    failing_id = failing.freeze().id
    workflow = group(failing, tasks["identity"].si(42))
    workflow.link_error(echo_task.s())
    workflow.apply_async()
    drain(app)
    assert got == [failing_id]


def test_header_failure_fails_each_task_of_a_group_body_with_the_header_error(
    app: Celery, tasks: dict[str, Any], echo: Any  # noqa: F811
) -> None:
    add, fail, xsum = tasks["add"], tasks["fail"], tasks["xsum"]
    echo_task, got = echo
    first = xsum.s()
    first.link_error(echo_task.si("own"))
    workflow = chord([add.si(1, 1), fail.si()], group(first, xsum.s()))
    workflow.link_error(echo_task.si("chord"))
    result = workflow.apply_async()
    drain(app)
    with pytest.raises(ValueError, match="something something"):
        result.get(timeout=1)
    assert all(isinstance(r.result, ValueError) for r in result.results)
    # Each task of the body calls its errbacks: its own, and the chord's once per task.
    assert sorted(got) == ["chord", "chord", "own"]


@pytest.mark.parametrize("body_kind", ["group", "chord"])
def test_link_error_option_runs_on_header_failure(
    app: Celery, tasks: dict[str, Any], echo: Any, body_kind: str  # noqa: F811
) -> None:
    add, fail, xsum = tasks["add"], tasks["fail"], tasks["xsum"]
    echo_task, got = echo
    if body_kind == "group":
        body: Any = group(xsum.s(), xsum.s())
    else:
        body = chord([xsum.s(), xsum.s()], xsum.s())
    chord([add.si(1, 1), fail.si()], body).apply_async(link_error=echo_task.si("failed"))
    drain(app)
    # Once per task of a group body; once for a chord body (its result is its body's).
    assert got == ["failed"] * (2 if body_kind == "group" else 1)


def test_errback_set_as_one_signature_runs_on_header_failure(
    app: Celery, tasks: dict[str, Any], echo: Any  # noqa: F811
) -> None:
    add, fail, xsum = tasks["add"], tasks["fail"], tasks["xsum"]
    echo_task, got = echo
    first = xsum.s().set(link_error=echo_task.si("own"))
    chord([add.si(1, 1), fail.si()], group(first, xsum.s())).apply_async()
    drain(app)
    assert got == ["own"]
    first.link_error(echo_task.si("more"))  # a single signature option grows into a list
    assert len(first.options["link_error"]) == 2


def test_errbacks_of_a_chord_in_a_group_body_run_on_header_failure(
    app: Celery, tasks: dict[str, Any], echo: Any  # noqa: F811
) -> None:
    add, fail, xsum = tasks["add"], tasks["fail"], tasks["xsum"]
    echo_task, got = echo
    workflow = chord([add.si(1, 1), fail.si()], group(chord([add.si(2, 2)], xsum.s()), xsum.s()))
    workflow.apply_async(link_error=echo_task.si("chord"))
    drain(app)
    assert got == ["chord", "chord"]


def test_a_group_own_link_error_replaces_its_tasks_errbacks_and_takes_the_chords(
    app: Celery, tasks: dict[str, Any], echo: Any  # noqa: F811
) -> None:
    add, fail, xsum = tasks["add"], tasks["fail"], tasks["xsum"]
    echo_task, got = echo
    failing = fail.s()
    failing.link_error(echo_task.si("replaced"))
    body = group(failing, xsum.s()).set(link_error=echo_task.si("group"))
    result = chord([add.si(1, 1)], body).apply_async(link_error=echo_task.si("chord"))
    drain(app)
    with pytest.raises(ValueError):
        result.get(timeout=1)
    assert sorted(got) == ["chord", "group"]


def test_errbacks_on_the_chord_header_with_the_setting(make_app: Any) -> None:
    app = make_app(task_allow_error_cb_on_chord_header=True)

    @app.task(name="h.fail", shared=False)
    def fail() -> None:
        raise ValueError("header")

    @app.task(name="h.identity", shared=False)
    def identity(value: Any) -> Any:
        return value

    @app.task(name="h.echo", shared=False)
    def echo_task(value: Any) -> None:
        got.append(value)

    got: list[Any] = []
    workflow = chord([fail.si(), identity.si(1)], identity.s())
    workflow.link_error(echo_task.si("failed"))
    assert all(t.options["link_error"] for t in workflow.header.tasks)
    workflow.apply_async()
    drain(app)
    # Called by the failing header task, and by the body the chord failed.
    assert got == ["failed", "failed"]


def test_an_errback_of_a_chord_with_a_failing_chord_in_its_header_runs_once(
    app: Celery, tasks: dict[str, Any], echo: Any  # noqa: F811
) -> None:
    fail, identity = tasks["fail"], tasks["identity"]
    echo_task, got = echo
    inner = chord([identity.si("t1"), fail.si()], identity.si("inner body"))
    outer = chord(group(identity.si("t3"), inner), echo_task.si("outer body"))
    outer.link_error(echo_task.si("errback"))
    outer.delay()
    drain(app)
    assert got == ["errback"]


def test_an_errback_that_cannot_be_sent_does_not_stop_the_chord_failure(
    app: Celery, tasks: dict[str, Any], echo: Any  # noqa: F811
) -> None:
    fail, xsum = tasks["fail"], tasks["xsum"]
    echo_task, got = echo
    broken = echo_task.si()  # immutable without its argument: refused when sent
    result = chord([fail.si()], group(xsum.s(), xsum.s())).apply_async(
        link_error=[broken, echo_task.si("ok")]
    )
    drain(app)
    assert all(isinstance(member.result, ValueError) for member in result.results)
    assert got == ["ok", "ok"]
