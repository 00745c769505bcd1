"""``minicelery multi start|stop|stopwait|restart|kill|show|names [NODES] [worker options]``:
several named workers in the background, each a ``worker --detach`` with its own pidfile
and log file, with ``celery multi``'s command line (``3`` for three nodes, ``-c:w1 4`` for
one node's option, ``--`` before arguments passed on untouched)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import click

from ..worker.controller import expand_hostname
from .daemon import Pidfile, expand_path, pid_alive
from .main import State

DEFAULT_PIDFILE = "%n.pid"
DEFAULT_LOGFILE = "%n%I.log"
# Options multi reads itself instead of passing them on as they are.
OWN = {
    ("-A", "--app"): "app",
    ("-b", "--broker"): "broker",
    ("--result-backend",): "result_backend",
    ("--timeout",): "timeout",
}
# Options of the ``minicelery`` group: (dest, flag, the State attribute given before multi).
GROUP_OPTIONS = (
    ("app", "-A", "app_spec"),
    ("broker", "-b", "broker"),
    ("result_backend", "--result-backend", "backend"),
)
PLACED = {"pidfile", "logfile", "hostname", "detach", "timeout", *(g[0] for g in GROUP_OPTIONS)}


class MultiUsageError(click.UsageError):
    """A command line multi cannot make sense of."""


@dataclass
class Option:
    dest: str
    flag: str
    value: str | None


@dataclass
class Parsed:
    names: list[str] = field(default_factory=list)
    general: list[Option] = field(default_factory=list)
    scoped: list[tuple[str, Option]] = field(default_factory=list)
    passthrough: list[str] = field(default_factory=list)


@dataclass
class Node:
    """One worker of the group: its full name, its pidfile, the command that starts it."""

    name: str
    pidfile: Pidfile
    argv: list[str]


def worker_option_table() -> dict[str, tuple[str, bool]]:
    """Every option string of ``worker`` (and multi's own) -> (dest, takes a value)."""
    from .worker import worker

    table = {flag: (dest, True) for flags, dest in OWN.items() for flag in flags}
    for param in worker.params:
        if isinstance(param, click.Option) and param.name:
            for flag in (*param.opts, *param.secondary_opts):
                table[flag] = (param.name, not (param.is_flag or param.count))
    return table


def parse(args: Sequence[str], table: dict[str, tuple[str, bool]]) -> Parsed:
    """Split ``args`` into node names, options for all nodes, options for some nodes
    (``-c:w1 4``, ``--queues:1-2=images``) and the arguments after ``--``."""
    parsed = Parsed()
    pos = 0
    while pos < len(args):
        arg = args[pos]
        pos += 1
        if arg == "--":
            parsed.passthrough = list(args[pos:])
            break
        if not arg.startswith("-") or arg == "-":
            parsed.names.append(arg)
            continue
        flag, selector, value = _split_option(arg, table)
        dest, takes_value = table[flag]
        if takes_value and value is None:
            if pos >= len(args):
                raise MultiUsageError(f"option {flag} needs a value")
            value, pos = args[pos], pos + 1
        elif not takes_value and value is not None:
            raise MultiUsageError(f"option {flag} takes no value")
        option = Option(dest, flag, value)
        if selector:
            parsed.scoped.append((selector, option))
        else:
            parsed.general.append(option)
    return parsed


def _split_option(arg: str, table: dict[str, tuple[str, bool]]) -> tuple[str, str, str | None]:
    """``--name:selector=value`` -> (``--name``, ``selector``, ``value``)."""
    head, eq, value = arg.partition("=")
    flag, _, selector = head.partition(":")
    if flag not in table and not flag.startswith("--") and len(flag) > 2 and not eq:
        flag, value, eq = flag[:2], flag[2:], "="  # -c4, as click reads it
    if flag not in table:
        raise MultiUsageError(f"no such worker option: {flag}")
    return flag, selector, value if eq else None


def node_names(names: Sequence[str]) -> list[str]:
    """Full node names: ``3`` means celery1..celery3; a name without ``@`` gets this
    host; ``%h`` expands as in ``worker -n``."""
    if not names:
        names = ["celery"]
    elif len(names) == 1 and names[0].isdigit():
        names = [f"celery{i}" for i in range(1, int(names[0]) + 1)]
    full = [expand_hostname(name) for name in names]
    if len(set(full)) != len(full):
        raise MultiUsageError("the same node name is given twice")
    return full


def _selected(selector: str, name: str, index: int) -> bool:
    """Whether ``-opt:selector`` applies to node ``name`` (1-based ``index``): a name,
    a full name, an index, a range ``1-3``, or a comma-separated list of those."""
    for part in selector.split(","):
        low, dash, high = part.partition("-")
        if part in (name, name.partition("@")[0]) or part == str(index):
            return True
        if dash and low.isdigit() and high.isdigit() and int(low) <= index <= int(high):
            return True
    return False


def build_nodes(parsed: Parsed, state: State) -> list[Node]:
    """Each node's options (its own ones over the common ones) and worker command."""
    nodes = []
    for index, name in enumerate(node_names(parsed.names), start=1):
        options = {o.dest: o for o in parsed.general}
        options.update({o.dest: o for sel, o in parsed.scoped if _selected(sel, name, index)})
        if "hostname" in options:
            raise MultiUsageError("give node names as arguments, not with -n")
        workdir = options["workdir"].value if "workdir" in options else None
        pidfile = _placed(options, "pidfile", DEFAULT_PIDFILE, name, workdir, index=0)
        logfile = _placed(options, "logfile", DEFAULT_LOGFILE, name, workdir, index=None)
        argv = [sys.executable, "-m", "minicelery"]
        for dest, flag, given_before in GROUP_OPTIONS:
            value = options[dest].value if dest in options else getattr(state, given_before)
            argv += [flag, value] if value else []
        # The worker expands the names again: a literal % must reach it as %%.
        argv += ["worker", "--detach", "-n", name, "--pidfile", pidfile.replace("%", "%%")]
        argv += ["--logfile", logfile]
        for option in options.values():
            if option.dest not in PLACED:
                argv += [option.flag] if option.value is None else [option.flag, option.value]
        nodes.append(Node(name, Pidfile(pidfile), argv + parsed.passthrough))
    return nodes


def _placed(
    options: dict[str, Option],
    dest: str,
    default: str,
    name: str,
    workdir: str | None,
    index: int | None,
) -> str:
    """A pidfile or log file name for node ``name``: expanded, and absolute (relative to
    ``--workdir`` when given, as the worker resolves it)."""
    template = options[dest].value if dest in options else default
    path = expand_path(template or default, name, index)
    return os.path.abspath(os.path.join(workdir or ".", path))


# --------------------------------------------------------------------------- actions


def start_node(node: Node) -> bool:
    pid = node.pidfile.read()
    if pid is not None and pid_alive(pid):
        _report(node, f"FAILED: already running (pid {pid})")
        return False
    done = subprocess.run(
        node.argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        reason = lines[-1].removeprefix("Error: ") if lines else f"exit code {done.returncode}"
        _report(node, f"FAILED: {reason}")
        return False
    _report(node, "OK")
    return True


def signal_node(node: Node, signum: int) -> int | None:
    """Send ``signum`` to the node's main process; its PID, or None if it is not running."""
    pid = node.pidfile.read()
    if pid is None or not pid_alive(pid):
        _report(node, "DOWN")
        return None
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        _report(node, "DOWN")
        return None
    _report(node, f"{signal.Signals(signum).name.removeprefix('SIG')} -> {pid}")
    return pid


def wait_gone(pids: dict[str, int], timeout: float | None) -> list[str]:
    """Wait until every process in ``pids`` (node -> PID) has exited; the nodes still
    running when ``timeout`` seconds have passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    running = dict(pids)
    while running:
        running = {name: pid for name, pid in running.items() if pid_alive(pid)}
        if not running or (deadline is not None and time.monotonic() >= deadline):
            break
        # Not our children: nothing to wait on but their PIDs.
        time.sleep(0.05)
    return sorted(running)


def _report(node: Node, text: str) -> None:
    click.echo(f"\t> {node.name}: {text}")


def do_start(nodes: list[Node], timeout: float | None) -> int:
    click.echo("> Starting nodes...")
    return 0 if all([start_node(node) for node in nodes]) else 1


def do_stop(nodes: list[Node], timeout: float | None, wait: bool = False) -> int:
    click.echo("> Stopping nodes...")
    pids = {node.name: pid for node in nodes if (pid := signal_node(node, signal.SIGTERM))}
    if not wait or not pids:
        return 0
    click.echo(f"> Waiting for {len(pids)} {'node' if len(pids) == 1 else 'nodes'}...")
    left = wait_gone(pids, timeout)
    for node in nodes:
        if node.name in pids:
            _report(node, "still running" if node.name in left else "OK")
    return 1 if left else 0


def do_stopwait(nodes: list[Node], timeout: float | None) -> int:
    return do_stop(nodes, timeout, wait=True)


def do_restart(nodes: list[Node], timeout: float | None) -> int:
    """One node at a time (the others keep working): stop it, wait for it, start it."""
    failed = 0
    for node in nodes:
        if do_stopwait([node], timeout) or do_start([node], timeout):
            failed += 1
    return 1 if failed else 0


def do_kill(nodes: list[Node], timeout: float | None) -> int:
    """SIGKILL: nothing runs the worker's exit, so its pidfile is removed here."""
    click.echo("> Killing nodes...")
    for node in nodes:
        pid = signal_node(node, signal.SIGKILL)
        if pid is not None:
            wait_gone({node.name: pid}, timeout or 10.0)
            _remove_stale(node.pidfile, pid)
    return 0


def _remove_stale(pidfile: Pidfile, pid: int) -> None:
    if pidfile.read() == pid and not pid_alive(pid):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pidfile.path)


def do_show(nodes: list[Node], timeout: float | None) -> int:
    for node in nodes:
        click.echo(shlex.join(node.argv))
    return 0


def do_names(nodes: list[Node], timeout: float | None) -> int:
    for node in nodes:
        click.echo(node.name)
    return 0


ACTIONS: dict[str, Callable[[list[Node], float | None], int]] = {
    "start": do_start,
    "stop": do_stop,
    "stopwait": do_stopwait,
    "restart": do_restart,
    "kill": do_kill,
    "show": do_show,
    "names": do_names,
}


def _timeout(parsed: Parsed) -> float | None:
    given = [o.value for o in parsed.general if o.dest == "timeout"]
    if not given or given[-1] is None:
        return None
    try:
        return float(given[-1])
    except ValueError as exc:
        raise MultiUsageError(f"--timeout: not a number of seconds: {given[-1]}") from exc


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("action", metavar="COMMAND", type=click.Choice(sorted(ACTIONS)))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def multi(ctx: click.Context, action: str, args: tuple[str, ...]) -> None:
    """Start, stop or restart several named workers in the background.

    \b
    minicelery multi start w1 w2 -A proj -l INFO --pidfile=/run/%n.pid --logfile=/log/%n%I.log
    minicelery multi start 3 -A proj -c:1 4     (celery1..celery3; celery1 gets 4 processes)
    minicelery multi stopwait w1 w2 --pidfile=/run/%n.pid [--timeout=SECONDS]

    Give stop, stopwait, restart and kill the node names and --pidfile given to start.
    Pidfiles default to %n.pid and log files to %n%I.log, in the current directory.
    """
    own_args = args[: args.index("--")] if "--" in args else args
    if "-h" in own_args or "--help" in own_args:
        click.echo(ctx.get_help())
        return
    parsed = parse(args, worker_option_table())
    nodes = build_nodes(parsed, ctx.find_object(State) or State(None, None, None))
    sys.exit(ACTIONS[action](nodes, _timeout(parsed)))
