"""``examples/async_crawler`` run as its README says, against a local HTTP server whose
pages each take a while: the worker's one child fetches them at once, not one by one."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import LOOPBACK, ManagedProcess, minicelery_argv, mode_args
from tests.integration.test_examples import EXAMPLES, example_env, run_python  # noqa: F401

PAGE_DELAY = 0.5  # seconds each page takes to answer


class SlowPages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(PAGE_DELAY)
        code = 404 if self.path.startswith("/missing") else 200
        body = b"<html>page</html>" if code == 200 else b"not found"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), SlowPages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_async_crawler(example_env: dict[str, str], site: str) -> None:  # noqa: F811
    folder = EXAMPLES / "async_crawler"
    worker = ManagedProcess(
        minicelery_argv("-A", "tasks", "worker", "-l", "INFO", "-c", "1", *mode_args()),
        cwd=folder, env=example_env, label="example async_crawler",
    )  # fmt: skip
    worker.wait_ready()
    try:
        out = run_python(
            "import time\nfrom tasks import fetch, crawl\n"
            f"results = [fetch.delay('{site}/?page=%d' % i) for i in range(30)]\n"
            "started = time.monotonic()\n"
            "print(sorted({r.get(timeout=30)['status'] for r in results}))\n"
            "print(time.monotonic() - started < 5)\n"
            f"print(crawl.delay(['{site}/', '{site}/missing']).get(timeout=30))",
            folder,
            example_env,
        )
        lines = out.strip().splitlines()
        assert lines[0] == "[200]"
        assert lines[1] == "True", out  # 30 pages of 0.5 s: 15 s one by one
        assert lines[2] == repr({f"{site}/": 200, f"{site}/missing": 404})
    finally:
        assert worker.stop() == 0, worker.describe()
