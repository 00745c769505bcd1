"""File names with Celery's ``%`` expansions: ``node_format`` (what a worker does with
``--logfile``), ``multi``'s nodes (which expand once and leave the rest to the worker), and
``app.log.setup_logging_subsystem`` writing to the file the expansion names."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from minicelery import Celery
from minicelery.app.log import Logging
from minicelery.apps.multi import Node
from minicelery.cli.daemon import expand_path
from minicelery.utils.nodenames import host_format, node_format

NODE = "worker@example.com"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("%n.log", "worker.log"),
        ("%h-%d-%p", "example.com-com-worker@example.com"),
        ("%n%I.log", "worker.log"),
        ("%n-%i.log", "worker-0.log"),
        ("%%n-%n.log", "%n-worker.log"),
        ("%%x.log", "%x.log"),
        ("50%%d.log", "50%d.log"),
        ("%%%%n", "%%n"),
    ],
)
def test_node_format_expands_as_a_workers_logfile(template: str, expected: str) -> None:
    assert node_format(template, NODE) == expected


def test_an_unknown_expansion_is_an_error_and_host_format_names_the_host() -> None:
    with pytest.raises(ValueError, match="%x"):
        node_format("%x.log", NODE)
    assert host_format("%n.%d", "box.example.org") == "box.example.org"
    assert node_format("%n", "example.com") == "celery"  # no name part: Celery's default


def test_a_multi_node_expands_once_and_leaves_the_rest_to_the_worker(tmp_path: Path) -> None:
    node = Node(NODE, options={"--logfile": str(tmp_path / "%%%%n-%n%I.log"), "-A": "proj"})
    assert node.argv[0].split() == ["-m", "minicelery", "-A", "proj", "worker", "--detach"]
    assert f"--logfile={tmp_path}/%%n-worker%I.log" in node.argv
    assert "-n worker@example.com" in node.argv and "--pidfile=worker.pid" in node.argv
    assert node.logfile == f"{tmp_path}/%%n-worker%I.log"
    assert node.pid is None and node.alive() is False


def test_the_multi_command_expands_like_a_node() -> None:
    assert expand_path("%%%%n-%n%I.log", NODE, index=None) == "%%n-worker%I.log"
    assert expand_path("%%n-%n%I.log", NODE) == "%n-worker.log"


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    Logging._setup = False
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        Logging._setup = False


@pytest.mark.parametrize(
    ("multi", "template", "expected"),
    [
        (False, "%%n-%n.log", "%n-worker.log"),
        (False, "%%x.log", "%x.log"),
        (True, "%%%%n-%n.log", "%n-worker.log"),
        (True, "50%%%%d.log", "50%d.log"),
        (True, "%%%%i-%i.log", "%i-0.log"),
    ],
)
def test_setup_logging_subsystem_writes_to_the_expanded_file(
    tmp_path: Path, fresh_logging: None, multi: bool, template: str, expected: str
) -> None:
    logfile = str(tmp_path / template)
    if multi:
        node = Node(NODE, options={"--logfile": logfile, "--pidfile": str(tmp_path / "w.pid")})
        logfile = next(a.partition("=")[2] for a in node.argv if a.startswith("--logfile="))
    app = Celery("percent-formatting", set_as_current=False)
    app.log.setup_logging_subsystem(loglevel="INFO", logfile=logfile, hostname=NODE)
    app.log.setup_logging_subsystem(loglevel="INFO", logfile="elsewhere.log", hostname=NODE)
    logging.getLogger("percent-formatting").info("escaped logfile reached")
    assert "escaped logfile reached" in (tmp_path / expected).read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".log") == [expected]
