"""Our RESP2 reader on a socket pair: replies split anywhere, protocol errors, and a read
cut short never leaves its connection behind with half a reply."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from minicelery.redislayer import errors, resp
from minicelery.redislayer.resp import Connection, Options

REPLIES = (
    b"+OK\r\n:-12\r\n$5\r\nab\r\nc\r\n$-1\r\n*-1\r\n*0\r\n"
    b"*4\r\n$1\r\nx\r\n*2\r\n:1\r\n$-1\r\n-ERR inner\r\n$0\r\n\r\n"
    b"-NOSCRIPT No matching script.\r\n-WRONGTYPE Operation\r\n-LOADING busy\r\n"
)


@pytest.fixture(params=["hiredis", "python"])
def pair(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Connection, socket.socket]]:
    """A connection reading with hiredis's reader, and one reading with our own parser."""
    if request.param == "python":
        monkeypatch.setattr(resp, "READER", None)
    elif resp.READER is None:
        pytest.skip("hiredis is not installed")
    ours, theirs = socket.socketpair()
    connection = Connection(Options(socket_timeout=2.0))
    ours.settimeout(2.0)
    connection._sock = ours
    yield connection, theirs
    connection.disconnect()
    theirs.close()


def read_all(connection: Connection) -> list[object]:
    found: list[object] = []
    for _ in range(10):
        try:
            found.append(connection.read_response())
        except errors.WireError as exc:
            found.append(exc)
    return found


def check(found: list[object]) -> None:
    assert found[:6] == [b"OK", -12, b"ab\r\nc", None, None, []]
    nested = found[6]
    assert isinstance(nested, list) and nested[:2] == [b"x", [1, None]] and nested[3] == b""
    assert type(nested[2]) is errors.ReplyError and str(nested[2]) == "inner"  # not raised
    assert type(found[7]) is errors.NoScript and str(found[7]) == "No matching script."
    assert type(found[8]) is errors.ReplyError and str(found[8]) == "WRONGTYPE Operation"
    assert type(found[9]) is errors.ServerLoading
    assert isinstance(found[9], errors.REDIS_ERRORS)


def test_replies_in_one_piece(pair: tuple[Connection, socket.socket]) -> None:
    connection, server = pair
    server.sendall(REPLIES)
    check(read_all(connection))


def test_replies_split_at_every_byte(pair: tuple[Connection, socket.socket]) -> None:
    connection, server = pair

    def trickle() -> None:
        for i in range(len(REPLIES)):
            server.sendall(REPLIES[i : i + 1])

    sender = threading.Thread(target=trickle)
    sender.start()
    found = read_all(connection)
    sender.join()
    check(found)


def test_a_protocol_error_drops_the_connection(pair: tuple[Connection, socket.socket]) -> None:
    connection, server = pair
    server.sendall(b"$x\r\n")
    with pytest.raises(errors.ConnectionLost, match="Protocol error"):
        connection.read_response()
    assert connection._sock is None


def test_a_read_cut_short_drops_the_connection(pair: tuple[Connection, socket.socket]) -> None:
    connection, server = pair
    server.sendall(b"*2\r\n$1\r\na\r\n")  # the second item never comes
    timer = threading.Timer(0.1, server.shutdown, (socket.SHUT_WR,))
    timer.start()
    with pytest.raises(errors.ConnectionLost, match="closed by server"):
        connection.read_response()
    timer.join()
    assert connection._sock is None


def test_an_exception_mid_reply_drops_the_connection(
    pair: tuple[Connection, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal handler's exception in the middle of a reply: the rest of it must not
    answer the next command sent on this connection."""
    connection, server = pair
    server.sendall(b"*2\r\n$1\r\na\r\n")
    fill = connection._fill
    calls: list[int] = []

    def interrupted() -> None:
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        fill()

    monkeypatch.setattr(connection, "_fill", interrupted)
    with pytest.raises(KeyboardInterrupt):
        connection.read_response()
    assert connection._sock is None


def test_a_round_trip_that_looks_for_its_reply_reads_it_whole(
    pair: tuple[Connection, socket.socket],
) -> None:
    """The reply is read without the socket's poll once seen: in one piece, or in two with
    the second likely after the look gave up (either way the reply is whole)."""
    connection, server = pair
    ping = b"*1\r\n$4\r\nPING\r\n"

    def answer() -> None:
        for pieces in ((b"$5\r\nfirst\r\n",), (b"*2\r\n$1\r\na", b"\r\n:7\r\n")):
            assert server.recv(100) == ping
            server.sendall(pieces[0])
            for piece in pieces[1:]:
                threading.Event().wait(0.02)  # not a synchronisation: any order reads the same
                server.sendall(piece)

    replier = threading.Thread(target=answer)
    replier.start()
    assert connection.round_trip(ping, spin=1.0) == b"first"
    assert connection.round_trip(ping, spin=0.001) == [b"a", 7]
    replier.join()


def test_replies_slower_than_the_budget_stop_the_looking_for_a_while() -> None:
    """A Redis across a network answers after any budget of microseconds: after LATE such
    replies in a row the connection waits asleep for the next SPIN_PAUSE, so a client of a
    remote Redis does not spend the budget's CPU on every command."""
    from minicelery.redislayer.respwait import LATE, SPIN_PAUSE, Lookout

    ours, theirs = socket.socketpair()
    try:
        lookout = Lookout()
        for _ in range(LATE - 1):
            assert not lookout.look(ours, 0.0002)  # nothing written: the budget runs out
        assert lookout.pause == 0
        theirs.sendall(b"+OK\r\n")
        assert lookout.look(ours, 0.5)  # a reply in time: the count starts again
        ours.recv(16)
        for _ in range(LATE - 1):
            assert not lookout.look(ours, 0.0002)
        assert lookout.pause == 0
        assert not lookout.look(ours, 0.0002)
        assert lookout.pause == SPIN_PAUSE
        theirs.sendall(b"+OK\r\n")
        assert not lookout.look(ours, 0.5)  # pausing: not looked at, waited for asleep
        assert lookout.pause == SPIN_PAUSE - 1
    finally:
        ours.close()
        theirs.close()


def test_crowded_replies_pause_the_looking_only_in_a_burst(monkeypatch: Any) -> None:
    """Replies that come while another process had the CPU stop the looking for a while
    only when commands follow each other closely (an enqueue loop). A command sent on its
    own (a ``delay()`` whose result is then waited for) keeps looking: the process that
    shared the CPU is the worker running that very task."""
    from minicelery.redislayer import respwait
    from minicelery.redislayer.respwait import BURST, CROWDED, SPIN_PAUSE, Lookout

    ours, theirs = socket.socketpair()

    def crowded_yield() -> None:  # another process ran meanwhile, and answered
        time.sleep(0.0005)
        theirs.sendall(b"+OK\r\n")

    monkeypatch.setattr(respwait, "_yield_cpu", crowded_yield)
    try:
        lookout = Lookout()
        for _ in range(CROWDED + 2):  # each on its own, well apart
            lookout.ended = time.perf_counter() - 10 * BURST
            assert lookout.look(ours, 0.5)
            ours.recv(16)
        assert lookout.pause == 0
        for _ in range(CROWDED):  # back to back
            assert lookout.look(ours, 0.5)
            ours.recv(16)
        assert lookout.pause == SPIN_PAUSE
    finally:
        ours.close()
        theirs.close()
