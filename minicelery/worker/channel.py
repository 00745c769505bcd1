"""The link between the main process and one prefork child: length-prefixed frames over a
socketpair. One write per frame and, on the main process's side, every frame that has
arrived taken in one read, where ``multiprocessing.Connection`` reads each frame twice
(header, then body) and blocks on a partial frame."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

_HEADER = struct.Struct("!I")
_READ_SIZE = 65536


class Channel:
    """One end of the link; frames are ``bytes`` (an empty frame is a valid frame)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self.on_send: Callable[[], None] | None = None  # told after each frame is written

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        left, right = socket.socketpair()
        return cls(left), cls(right)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send_bytes(self, frame: bytes) -> None:
        self.sock.sendall(_HEADER.pack(len(frame)) + frame)
        if self.on_send is not None:
            self.on_send()

    def recv_bytes(self) -> bytes:
        """The next frame, blocking until it is complete; EOFError when the other end has
        closed."""
        while True:
            frames = self._take(1)
            if frames:
                return frames[0]
            self._fill()

    def recv_ready(self) -> list[bytes]:
        """Every complete frame after one read (for a socket select() found readable): none
        while a frame is still partial; EOFError when the other end has closed."""
        self._fill()
        return self._take()

    def buffered(self) -> list[bytes]:
        """The complete frames already read, without reading (after :meth:`recv_bytes`,
        which takes one frame and may have read more)."""
        return self._take()

    def _fill(self) -> None:
        data = self.sock.recv(_READ_SIZE)
        if not data:
            raise EOFError("the other end closed the channel")
        self._buffer += data

    def _take(self, limit: int = 0) -> list[bytes]:
        buffer, frames, pos = self._buffer, [], 0
        while len(buffer) - pos >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, pos)
            end = pos + _HEADER.size + size
            if end > len(buffer):
                break
            frames.append(bytes(buffer[pos + _HEADER.size : end]))
            pos = end
            if len(frames) == limit:
                break
        if pos:
            del buffer[:pos]
        return frames

    def close(self) -> None:
        self.sock.close()
