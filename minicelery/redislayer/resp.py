"""Redis's protocol (RESP2) on a socket: a connection that reads replies from its own
buffer, and a per-process pool of them. Replies are parsed by hiredis's reader when it is
installed (it comes with ``redis[hiredis]``, our dependency; a tenth of the time per array
item, 0.15 MB), in pure Python otherwise. :mod:`.respclient` builds the client on
top; the hot path (:mod:`.wire`) uses these connections directly, as it used redis-py's.

A connection answers the calls the wire makes on redis-py's: ``connect``, ``disconnect``,
``send_packed_command``, ``read_response``, ``can_read`` and ``_sock``.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import errors
from .respwait import CHUNK, Lookout, read_ready, write
from .wire import current_pid, pack_commands

_hiredis: Any
try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - installed with redis[hiredis]
    _hiredis = None

#: The reader class used for new connections (None: our own parser); tests switch it.
READER: Any = None if _hiredis is None else _hiredis.Reader

IDLE_CHECK = 30.0  # seconds idle after which a connection looks for a close before a send


@dataclass(frozen=True)
class Options:
    """Where and how to connect: ``path`` (a unix socket) or ``host``/``port``."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0
    client_name: str | None = None
    socket_timeout: float | None = 10.0
    connect_timeout: float | None = 4.0

    def where(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"

    def handshake(self) -> list[tuple[Any, ...]]:
        """The commands a new connection sends first (none for a default one)."""
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            auth = (self.username, self.password) if self.username else (self.password,)
            commands.append(("AUTH", *auth))
        if self.db:
            commands.append(("SELECT", self.db))
        if self.client_name:
            commands.append(("CLIENT", "SETNAME", self.client_name))
        return commands


#: Error codes whose prefix redis-py strips from the message, and the class each raises.
_CODES: dict[str, type[errors.WireError]] = {
    "ERR": errors.ReplyError,
    "EXECABORT": errors.ReplyError,
    "READONLY": errors.ReadOnly,
    # A blocking read on a master that a failover demoted (the command did not run).
    "UNBLOCKED": errors.ReadOnly,
    "NOPERM": errors.NoPermission,
    "NOSCRIPT": errors.NoScript,
    "LOADING": errors.ServerLoading,
    "NOAUTH": errors.AuthenticationFailed,
    "WRONGPASS": errors.AuthenticationFailed,
}


def reply_error(text: str) -> errors.WireError:
    """The exception for an error reply ``text`` (its code stripped, as redis-py does)."""
    code = text.split(" ", 1)[0]
    kind = _CODES.get(code)
    if kind is None:
        return errors.ReplyError(text)
    message = text[len(code) + 1 :]
    if code == "ERR" and message.startswith(("max number of clients", "invalid password")):
        kind = errors.ConnectionLost if message[0] == "m" else errors.AuthenticationFailed
    return kind(message)


def _new_reader() -> Any:
    return None if READER is None else READER(replyError=reply_error)


class Connection:
    """One socket to Redis, opened on first use and again after :meth:`disconnect`. Error
    replies inside an array come back as exception objects; a top-level one is raised."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._sock: socket.socket | None = None
        self._buf = b""
        self._pos = 0
        self._reader = _new_reader()
        self._pid = os.getpid()
        self._used = 0.0  # when it last sent
        self._lookout = Lookout()
        self._ready = False  # await_reply saw bytes to read: no poll before reading them

    def connect(self) -> None:
        if self._sock is not None and self._pid == current_pid():
            return
        self._drop()
        self._pid = os.getpid()
        try:
            self._sock = self._open()
        except TimeoutError as exc:
            raise errors.ReplyTimeout(f"Timeout connecting to {self.options.where()}") from exc
        except OSError as exc:
            raise errors.ConnectionLost(
                f"Error {exc.errno} connecting to {self.options.where()}. {exc.strerror}."
            ) from exc
        self._used = time.monotonic()
        handshake = self.options.handshake()
        if handshake:
            try:
                self._sendall(pack_commands(handshake))
                for _ in handshake:
                    self.read_response()
            except BaseException:
                self._drop()  # never left open unauthenticated, or on the wrong database
                raise

    def _open(self) -> socket.socket:
        opts = self.options
        if opts.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(opts.connect_timeout)
                sock.connect(opts.path)
            except BaseException:
                sock.close()
                raise
        else:
            # An ASCII host name as bytes: a str is encoded with the "idna" codec, whose
            # import (with unicodedata and stringprep) costs each process 0.4 MB.
            host: Any = opts.host.encode() if opts.host.isascii() else opts.host
            sock = socket.create_connection((host, opts.port), opts.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(opts.socket_timeout)
        return sock

    def _drop(self) -> None:
        """Forget the socket; closed only in the process that opened it (a forked child
        never touches its parent's connections beyond its own copy of the descriptor)."""
        sock, self._sock = self._sock, None
        self._buf, self._pos = b"", 0
        self._lookout.forget()
        self._ready = False
        self._reader = _new_reader()
        if sock is not None:
            sock.close()

    def disconnect(self) -> None:
        self._drop()

    def send_packed_command(self, chunks: Sequence[bytes], check_health: bool = True) -> None:
        """Write ``chunks`` (commands in wire format). ``check_health``: after a long idle
        spell, first look (without a round trip) whether Redis closed the connection."""
        if check_health and self._sock is not None and self._stale():
            self._drop()
        self.connect()
        self._sendall(b"".join(chunks))

    def send_command(self, *args: Any) -> None:
        self.send_packed_command([pack_commands((args,))])

    def _stale(self) -> bool:
        if time.monotonic() - self._used < IDLE_CHECK or self._pid != current_pid():
            return self._pid != current_pid()
        # Nothing is due on an idle connection: readable means closed (or garbage).
        return self.buffered() or self._readable(0)

    def _sendall(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            write(self._sock, data)
        except TimeoutError as exc:
            self._drop()
            raise errors.ReplyTimeout("Timeout writing to socket") from exc
        except OSError as exc:
            self._drop()
            raise errors.ConnectionLost(f"Error while writing to socket. {exc}") from exc
        except BaseException:
            self._drop()  # part of a command may be out: what follows would be garbage
            raise
        self._used = time.monotonic()

    def can_read(self, timeout: float | None = 0) -> bool:
        """Whether a reply (or part of one) is there to read, waiting up to ``timeout``."""
        self.connect()
        return self.buffered() or self._readable(timeout)

    def buffered(self) -> bool:
        """Whether bytes of a reply have been read from the socket and not parsed yet."""
        if self._reader is not None:
            return bool(self._reader.has_data())
        return self._pos < len(self._buf)

    def _readable(self, timeout: float | None) -> bool:
        assert self._sock is not None
        try:
            return bool(select.select([self._sock], [], [], timeout)[0])
        except (OSError, ValueError) as exc:
            self._drop()
            raise errors.ConnectionLost(f"Error while reading from socket: {exc}") from exc

    def round_trip(self, packed: bytes, spin: float = 0.0) -> Any:
        """Send one command (in wire format) and read its reply, as ``send_packed_command``
        then ``read_response`` do, in one call for the hot path (a publish); ``spin``:
        seconds of :meth:`await_reply` between them."""
        if self._sock is None or self._stale():
            self.send_packed_command([packed])  # (re)connects
        else:
            self._sendall(packed)
        if spin:
            self.await_reply(spin)
        return self.read_response()

    def await_reply(self, budget: float) -> None:
        """Look for the reply to a command just sent, without sleeping, for up to ``budget``
        seconds (then :meth:`read_response` sleeps until it comes): see
        :meth:`.respwait.Lookout.look`."""
        if self._sock is None or self.buffered():
            return
        try:
            self._ready = self._lookout.look(self._sock, budget)
        except BaseException:
            self._drop()  # a signal handler's exception: the reply would answer the next call
            raise

    def read_response(self, **_: Any) -> Any:
        """The next reply; an error reply is raised (as :mod:`.errors` classes)."""
        if self._sock is None:
            raise errors.ConnectionLost("Connection closed: nothing to read")
        try:
            reply = self._reply()
        except TimeoutError as exc:
            self._drop()
            raise errors.ReplyTimeout("Timeout reading from socket") from exc
        except OSError as exc:
            self._drop()
            raise errors.ConnectionLost(f"Error while reading from socket: {exc}") from exc
        except ValueError as exc:  # a length that is no number
            self._drop()
            raise errors.ConnectionLost(f"Protocol error: {exc}") from exc
        except BaseException:
            # Half a reply read (a protocol error, or a signal handler's exception): the
            # rest would answer the next command, so the connection goes.
            self._drop()
            raise
        if isinstance(reply, errors.WireError):
            if isinstance(reply, errors.ReadOnly):
                self._drop()  # a demoted master: the next connection looks for the new one
            raise reply
        return reply

    def _reply(self) -> Any:
        reader = self._reader
        if reader is None:
            return self._parsed()
        try:
            reply = reader.gets()
            while reply is False:
                self._fill()
                reply = reader.gets()
        except _hiredis.ProtocolError as exc:
            raise ValueError(str(exc)) from exc
        return reply

    def _parsed(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exact(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else self._array(count)
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest
        if kind == b"-":
            return reply_error(rest.decode(errors="replace"))
        raise errors.ConnectionLost(f"Protocol error: unexpected reply {line[:40]!r}")

    def _array(self, count: int) -> list[Any]:
        """``count`` replies: the bulk strings among the first of them read straight from the
        buffer (a reserve's reply is dozens of them), the rest one by one."""
        items: list[Any] = []
        append, buf, pos = items.append, self._buf, self._pos
        size, find = len(buf), buf.find
        for _ in range(count):
            if pos >= size or buf[pos] != 36:  # not b"$"
                break
            end = find(b"\r\n", pos)
            length = int(buf[pos + 1 : end]) if end > 0 else -2
            stop = end + 2 + length
            if length < 0 or stop + 2 > size:
                break  # a nil, or not all in the buffer yet
            append(buf[end + 2 : stop])
            pos = stop + 2
        self._pos = pos
        items.extend(self._parsed() for _ in range(count - len(items)))
        return items

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n", self._pos)
            if end >= 0:
                line = self._buf[self._pos : end]
                self._pos = end + 2
                return line
            self._fill()

    def _exact(self, size: int) -> bytes:
        end = self._pos + size
        if end + 2 <= len(self._buf):
            data = self._buf[self._pos : end]
            self._pos = end + 2
            return data
        return self._large(size)

    def _large(self, size: int) -> bytes:
        """A bulk reply longer than what is buffered: read the rest of it straight into
        its own buffer (joining chunk after chunk would copy it over and over)."""
        assert self._sock is not None
        out = bytearray(size + 2)
        have = len(self._buf) - self._pos
        out[:have] = self._buf[self._pos :]
        self._buf, self._pos = b"", 0
        view = memoryview(out)
        while have < size + 2:
            got = self._sock.recv_into(view[have:])
            if not got:
                raise errors.ConnectionLost("Connection closed by server.")
            have += got
        view.release()
        return bytes(out[:size])

    def _fill(self) -> None:
        assert self._sock is not None
        if self._ready:
            self._ready = False
            chunk = read_ready(self._sock)
        else:
            chunk = self._sock.recv(CHUNK)
        if not chunk:
            raise errors.ConnectionLost("Connection closed by server.")
        if self._reader is not None:
            self._reader.feed(chunk)
            return
        self._buf = self._buf[self._pos :] + chunk if self._pos < len(self._buf) else chunk
        self._pos = 0


class Pool:
    """The idle connections of one client, per process: a forked child starts with none
    (its parent's stay the parent's). Thread-safe."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def get_connection(self, *_: Any, **__: Any) -> Connection:
        with self._lock:
            self._check_pid()
            if self._idle:
                return self._idle.pop()
        return Connection(self.options)

    def release(self, connection: Connection) -> None:
        with self._lock:
            self._check_pid()
            if connection._pid == self._pid:
                self._idle.append(connection)

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._idle = []  # the parent's: dropped unclosed, its sockets are not ours

    def disconnect(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for connection in idle:
                connection.disconnect()
