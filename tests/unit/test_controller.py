"""The worker's main loop pieces that need no processes (a threads pool on memory://)."""

from __future__ import annotations

from minicelery import Celery
from minicelery.broker import OutgoingMessage
from minicelery.worker.controller import WorkController, WorkerOptions


def test_a_lost_reserve_reply_gives_back_what_the_worker_never_saw(app: Celery) -> None:
    """A reserve whose reply was lost may have moved messages into the hold; once the
    broker answers again the worker returns them, keeping what it does know about."""
    controller = WorkController(app, WorkerOptions(pool="threads", concurrency=1))
    app.broker.publish([OutgoingMessage("celery", b"seen"), OutgoingMessage("celery", b"lost")])
    seen, lost = app.broker.reserve(controller.consumer_id, ["celery"], 2)
    controller.buffer.append(seen)  # known to the worker; ``lost`` was in the lost reply
    controller.consumer.hold_suspect = True

    controller._reconcile_hold()

    assert controller.consumer.hold_suspect is False
    assert app.broker.held(controller.consumer_id) == [seen.tag]
    assert app.broker.queue_sizes(["celery"]) == {"celery": 1}
    again = app.broker.reserve("other", ["celery"], 5)
    assert [d.data for d in again] == [lost.data]
