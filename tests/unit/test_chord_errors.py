"""What a failing chord header does, as in Celery 5.7: ``get()`` on the chord raises the
header task's own error, and the errbacks linked to the chord (to a single body, to the
tasks of a group body, to the body of a chord in it) are called. Run on memory:// by
executing the sent messages in this process."""

from __future__ import annotations

from typing import Any

import pytest

from minicelery import Celery, chord
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

