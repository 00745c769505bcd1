"""``minicelery events``: a live view of the cluster in the terminal, or ``--dump`` to print
every event as it arrives. Workers send events when started with ``-E``."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from types import FrameType
from typing import IO

import click

from ..events.dumper import Dumper
from ..events.receiver import EventReceiver
from ..events.view import Monitor
from ..exceptions import OperationalError
from .main import State, friendly_errors

# Plain ANSI: the alternate screen (the terminal is left as it was), cursor hidden/shown,
# cursor home, clear to the end of the line / of the screen.
ENTER, LEAVE = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
RETRY_MAX = 2.0  # longest pause between two tries to read again after losing Redis


@click.command()
@click.option("-d", "--dump", is_flag=True, help="Print each event as it arrives, one per line.")
@click.option("--json", "as_json", is_flag=True, help="With --dump: one JSON object per line.")
@click.option(
    "-F",
    "--frequency",
    "--freq",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes of the live view.",
)
@click.pass_obj
@friendly_errors
def events(state: State, dump: bool, as_json: bool, frequency: float) -> None:
    """Watch the workers' events (start workers with -E): a live view of workers and tasks,
    or --dump. Without a terminal, the events are dumped."""
    receiver: EventReceiver = state.app.events.Receiver()

    def stop(signum: int, frame: FrameType | None) -> None:
        receiver.should_stop = True  # the loops check it between reads (within a second)

    signal.signal(signal.SIGTERM, stop)
    try:
        if dump or as_json or not sys.stdout.isatty():
            _dump(receiver, as_json)
        else:
            _live(receiver, frequency, sys.stdout)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader went away (``| head``): nothing more to say
        sys.stderr.close()


def _dump(receiver: EventReceiver, as_json: bool) -> None:
    click.echo("-> minicelery events: starting capture...", err=True)

    def write(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    receiver.handlers["*"] = Dumper(write, as_json).on_event
    reader = Reader(receiver)
    while not receiver.should_stop:
        reader.drain(1.0)


def _live(receiver: EventReceiver, frequency: float, out: IO[str]) -> None:
    monitor = Monitor()
    receiver.handlers["*"] = monitor.on_event
    reader = Reader(receiver)
    out.write(ENTER)
    try:
        while not receiver.should_stop:
            _draw(out, monitor)
            deadline = time.monotonic() + frequency
            while not receiver.should_stop:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                reader.drain(min(left, 1.0))
    finally:
        out.write(LEAVE)
        out.flush()


class Reader:
    """Reads events on through a lost connection to Redis (a restart, a Sentinel or Cluster
    failover), as Celery's ``events`` reconnects: the loss is said once on stderr, reads
    are tried again with a growing pause, and they go on from the last event read, so none
    that the stream still holds is missed."""

    def __init__(self, receiver: EventReceiver) -> None:
        self.receiver = receiver
        self.pause = 0.0  # > 0 while Redis cannot be read

    def drain(self, timeout: float) -> None:
        """Handle the events of up to ``timeout`` seconds; a Redis error costs a pause."""
        try:
            self.receiver.drain(timeout)
        except OperationalError as exc:
            if not self.pause:
                click.echo(f"-> minicelery events: connection lost ({exc}); reconnecting",
                           err=True)  # fmt: skip
            self.pause = min(max(self.pause * 2, 0.1), RETRY_MAX)
            time.sleep(self.pause)
            return
        if self.pause:
            click.echo("-> minicelery events: reconnected", err=True)
            self.pause = 0.0


def _draw(out: IO[str], monitor: Monitor) -> None:
    size = shutil.get_terminal_size()
    lines = monitor.render(size.columns, size.lines)
    out.write(HOME + "".join(line + CLEAR_LINE + "\n" for line in lines[:-1]))
    if lines:
        out.write(lines[-1] + CLEAR_LINE)
    out.write(CLEAR_BELOW)
    out.flush()
