"""The main process's link to a prefork child: frames survive being split and batched."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from minicelery.worker.channel import Channel


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
