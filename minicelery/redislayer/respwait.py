"""Waiting for a reply due within microseconds (a publish) without sleeping: the socket is
looked at for a bounded time, the CPU yielded at each look, and the waiting done asleep
again while another process is seen to need this CPU. And a socket's writes and reads
without the poll Python makes before each on a socket with a timeout."""

from __future__ import annotations

import os
import select
import socket
import time
from typing import Any

#: Gives the CPU to another runnable process, if any (where the platform can).
_yield_cpu: Any = getattr(os, "sched_yield", lambda: None)

#: Seconds a yield of the CPU took beyond which another process ran meanwhile.
YIELDED = 5e-6
CROWDED = 3  # replies in a row that came after such a yield, after which ...
SPIN_PAUSE = 100  # ... this many are waited for asleep
LATE = 3  # replies in a row slower than the budget (a Redis across a network): pause too
#: Seconds between the end of one look and the start of the next within which the two
#: count as one burst of commands (an enqueue loop): only there does crowding pause looking.
BURST = 50e-6

CHUNK = 65536  # bytes asked of the socket per read


class Lookout:
    """One connection's looking for its replies (see :meth:`look`)."""

    def __init__(self) -> None:
        self._poll: Any = None  # a select.poll of the socket looked at
        self.pause = 0  # replies still to wait for asleep
        self.crowded = 0  # replies in a row that came while another process had the CPU
        self.late = 0  # replies in a row that came after the budget was spent
        self.ended = 0.0  # when the last look ended (time.perf_counter)

    def forget(self) -> None:
        """The socket is closed: the next one is another."""
        self._poll = None

    def look(self, sock: socket.socket, budget: float) -> bool:
        """Whether ``sock`` became readable within ``budget`` seconds of looking, False at
        once while pausing. A process asleep in ``recv`` is woken only after the reply
        lands, and on a virtual machine whose idle CPUs halt that wake-up alone can take
        longer than a local Redis took to answer; looking costs at most ``budget`` of CPU,
        given up at each look to any process waiting for it."""
        if self.pause:
            self.pause -= 1
            return False
        poll = self._poll
        if poll is None:
            poll = self._poll = select.poll()
            poll.register(sock, select.POLLIN)
        ready, clock = poll.poll, time.perf_counter
        now = clock()
        burst = now - self.ended < BURST
        deadline, crowded = now + budget, False
        while not ready(0):
            if now >= deadline:
                self._note_late()
                self.ended = now
                return False
            _yield_cpu()
            before, now = now, clock()
            crowded = crowded or now - before > YIELDED
        self.late = 0
        self.note_crowding(crowded and burst)
        self.ended = clock()
        return True

    def _note_late(self) -> None:
        """A reply slower than the budget: after :data:`LATE` in a row (Redis on another
        machine, whose round trip no look of microseconds covers), wait for the next
        :data:`SPIN_PAUSE` asleep rather than spend the budget's CPU on each for nothing."""
        self.late += 1
        if self.late >= LATE:
            self.late, self.pause = 0, SPIN_PAUSE

    def note_crowding(self, crowded: bool) -> None:
        """After :data:`CROWDED` replies in a row that came while another process had this
        CPU (Redis on the same one, which answers only while this process waits, so that
        waiting asleep costs less; or a busy neighbour), wait for the next
        :data:`SPIN_PAUSE` asleep. A lone long yield (an interrupt, a passing process) is
        no such sign, and neither is a reply to a command sent on its own rather than in
        a burst (a ``delay()`` whose result is then waited for: the process that shared
        the CPU was the worker running that very task, and a caller gone to sleep would
        wake only after it, behind the work it is waiting for)."""
        self.crowded = self.crowded + 1 if crowded else 0
        if self.crowded >= CROWDED:
            self.crowded, self.pause = 0, SPIN_PAUSE


def write(sock: socket.socket, data: bytes) -> None:
    """``sock.sendall(data)`` without the poll a socket with a timeout makes before each
    send: a command is written at once unless the socket's buffer is full."""
    try:
        sent = os.write(sock.fileno(), data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def read_ready(sock: socket.socket) -> bytes:
    """What a socket seen readable holds, read without the poll ``sock.recv`` makes first
    on a socket with a timeout."""
    try:
        return os.read(sock.fileno(), CHUNK)
    except BlockingIOError:  # seen readable, and yet not: read as usual
        return sock.recv(CHUNK)
