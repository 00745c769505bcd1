"""The main process's link to a prefork child: frames survive being split and batched."""

from __future__ import annotations

import signal
import struct
from collections.abc import Iterator

import pytest

from minicelery import Celery
from minicelery.broker import Delivery
from minicelery.message import MessageOptions, build_message
from minicelery.worker.channel import Channel
from minicelery.worker.pool import Job
from minicelery.worker.prefork import Child, PreforkPool


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    left, right = Channel.pair()
    yield left, right
    left.close()
    right.close()


def test_frames_arrive_whole_and_in_order(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    for frame in (b"one", b"", b"x" * 200_000):
        left.send_bytes(frame)
    assert right.recv_bytes() == b"one"
    assert right.recv_bytes() == b""  # an empty frame (the stop request) is a frame
    assert right.recv_bytes() == b"x" * 200_000


def test_one_read_takes_every_frame_that_has_arrived(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    for i in range(5):
        left.send_bytes(b"frame %d" % i)
    assert right.recv_ready() == [b"frame %d" % i for i in range(5)]


def test_a_partial_frame_waits_for_the_rest(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    left.sock.sendall(struct.pack("!I", 6) + b"hel")
    assert right.recv_ready() == []
    left.sock.sendall(b"lo!" + struct.pack("!I", 1))
    assert right.recv_ready() == [b"hello!"]
    left.sock.sendall(b"z")
    assert right.recv_ready() == [b"z"]


def test_a_closed_end_is_eof(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    left.send_bytes(b"last")
    left.close()
    assert right.recv_bytes() == b"last"
    with pytest.raises(EOFError):
        right.recv_bytes()
    with pytest.raises(EOFError):
        right.recv_ready()



def test_a_job_for_a_child_that_died_unseen_is_refused(app: Celery) -> None:
    """A child can die between two turns of the main loop: handing it a job then fails
    (EPIPE). The pool refuses the job (the worker hands it to another) and gives that
    child no more, instead of letting the error end the worker."""
    pool = PreforkPool(app, 0, lambda *args: ("SUCCESS", False, None, None))
    ours, theirs = Channel.pair()
    theirs.close()  # the child is gone
    pool.children[1] = Child(1, 1, ours, ready=True)
    message = build_message("t.add", (1, 2), {}, MessageOptions("id-1", "celery"))
    job = Job(Delivery("1", "celery", message.encode()), message, False, False)
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in any Python program
    try:
        assert pool.idle_slots() == 1
        assert pool.submit(job) is False
        assert job.slot is None and pool.idle_slots() == 0 and pool.busy_jobs() == []
    finally:
        ours.close()
        signal.signal(signal.SIGPIPE, old)
