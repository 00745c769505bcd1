"""The worker's main loop pieces that need no processes (a threads pool on memory://)."""

from __future__ import annotations

from minicelery import Celery
from minicelery.broker import OutgoingMessage
from minicelery.worker.controller import WorkController, WorkerOptions
from minicelery.worker.pool import Wake


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


class _Lane:
    """The counting part of a broker lane: commands go out, Redis answers them in order."""

    def __init__(self) -> None:
        self.sent = self.confirmed = 0
        self.pending: list[object] = []
        self.broken = False

    def send(self, commands: list[object]) -> None:
        self.pending.extend(commands)
        self.sent += len(commands)

    def answer(self, count: int = 1) -> None:
        del self.pending[:count]
        self.confirmed += count

    def fileno(self) -> int:
        return 1000  # no real socket: never the fd a wake-up is for


def test_unconfirmed_acks_count_against_the_prefetch_window(app: Celery) -> None:
    """An ack sent on the lane may reach Redis after a reserve sent on another connection
    just behind it; until Redis confirms it, its message is still held, so the worker
    reserves that much less (the prefetch bound holds whichever lands first)."""
    controller = WorkController(
        app, WorkerOptions(pool="threads", concurrency=1, prefetch_multiplier=4)
    )
    lane = _Lane()
    outbox = controller.outbox
    outbox.lane = lane  # type: ignore[assignment]
    assert controller._room() == 4

    for tag in ("a", "b", "c"):
        outbox.add_ack(tag)
    assert controller._room() == 4, "acks not sent yet: the worker sends them before a reserve"
    assert outbox.flush(controller.consumer, idle=False, force=True)
    assert (outbox.acks_in_flight(), controller._room()) == (3, 1)

    outbox.add_results([("t1", b"{}")])
    assert outbox.flush(controller.consumer, idle=True)  # a result alone: no acks in it
    assert len(lane.pending) == 2 and outbox.acks_in_flight() == 3

    lane.answer()  # the call with the three acks
    assert (outbox.acks_in_flight(), controller._room()) == (0, 4)

    # Early acks (tasks just started) never wait on the lane: they ride in the next reserve.
    outbox.add_ack("d", early=True)
    outbox.add_ack("e")
    outbox.add_ack("f", early=True)
    assert outbox.take_early_acks() == ["d", "f"] and outbox.acks == ["e"]
    assert outbox.take_early_acks() == []
    outbox.put_back_acks(["d", "f"])  # a reserve that failed to go out
    assert outbox.take_early_acks() == ["d", "f"]


def test_early_acks_of_a_reserve_whose_reply_was_lost_are_sent_again(app: Celery) -> None:
    """Early acks ride with a reserve; when its reply is lost Redis may not have run them,
    and the hold check that follows would give back tasks that already started. They go
    back among the acks to send, before that check can run."""
    controller = WorkController(
        app, WorkerOptions(pool="threads", concurrency=1, prefetch_multiplier=4)
    )
    controller.outbox.lane = _Lane()  # type: ignore[assignment]
    controller.outbox.add_ack("started-1", early=True)
    controller.outbox.add_ack("started-2", early=True)
    sent: list[list[str]] = []

    def fetch_start(room: int, acks: list[str]) -> bool:
        sent.append(list(acks))
        return True

    def lost_reply() -> list[object]:
        controller.consumer.hold_suspect = True  # what a failed read of the reply sets
        return []

    controller.consumer.fetch_start = fetch_start  # type: ignore[method-assign]
    controller.consumer.on_wake = lost_reply  # type: ignore[method-assign]
    controller.outbox.acks_since = 0.0
    controller._refill()
    assert sent == [["started-1", "started-2"]] and controller.outbox.acks == []

    controller._on_wake(Wake(-1))

    assert controller.outbox.acks == ["started-1", "started-2"]
