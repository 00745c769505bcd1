"""Celery's small utility paths the test helpers and Celery's suite import."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from minicelery.utils.nodenames import anon_nodename, default_nodename, nodename, nodesplit
from minicelery.utils.sysinfo import cgroup_cpu_quota, cpu_budget


def test_node_names() -> None:
    host = socket.gethostname()
    assert anon_nodename() == f"gen{os.getpid()}@{host}"
    assert anon_nodename("example.com", prefix="x") == f"x{os.getpid()}@example.com"
    assert nodename("w1", "h") == "w1@h"
    assert nodesplit("w1@h") == ("w1", "h") and nodesplit("h") == (None, "h")
    assert default_nodename(None) == f"celery@{host}"
    assert default_nodename("w2@x") == "w2@x"


def test_cpu_budget_is_capped_by_a_cgroup_quota(tmp_path: Path) -> None:
    budget = cpu_budget()
    assert 1 <= budget.count <= budget.available
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert cgroup_cpu_quota(cpu_max) == 1.5
    cpu_max.write_text("max 100000\n")
    assert cgroup_cpu_quota(cpu_max) is None
