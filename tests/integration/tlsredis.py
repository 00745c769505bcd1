"""A redis-server that speaks only TLS (client certificates required), with a CA and
certificates made at test time by the ``openssl`` command."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.helpers import LOOPBACK, free_port, wait_until


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certificates(directory: Path) -> None:
    """``ca.crt``, ``server.crt/key`` (for 127.0.0.1), ``client.crt/key`` signed by the CA,
    and ``other-ca.crt``, a CA that signed none of them."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
                "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN={ca}", cwd=directory)  # fmt: skip
    (directory / "server.ext").write_text(f"subjectAltName=IP:{LOOPBACK}\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                "-extfile", f"{name}.ext", cwd=directory)  # fmt: skip


def ssl_options(directory: Path, ca: str = "ca.crt") -> dict[str, str]:
    """``broker_use_ssl`` for a client with the test's certificate, trusting ``ca``."""
    return {
        "ssl_cert_reqs": "CERT_REQUIRED",
        "ssl_ca_certs": str(directory / ca),
        "ssl_certfile": str(directory / "client.crt"),
        "ssl_keyfile": str(directory / "client.key"),
    }


@contextlib.contextmanager
def tls_redis(binary: str, directory: Path) -> Iterator[str]:
    """Run a TLS-only redis-server; yield its ``rediss://`` URL; stop it by its PID."""
    assert shutil.which("openssl"), "the openssl command is needed"
    make_certificates(directory)
    port = free_port()
    argv = [
        binary, "--port", "0", "--tls-port", str(port), "--bind", LOOPBACK,
        "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
        "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "yes",
        "--save", "", "--appendonly", "no", "--dir", str(directory),
    ]  # fmt: skip
    with (directory / "redis.log").open("ab") as log:
        proc = subprocess.Popen(
            argv, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"rediss://{LOOPBACK}:{port}/0"
    try:
        options = ssl_options(directory)
        probe = redis.Redis.from_url(url, **{**options, "ssl_cert_reqs": "required"})

        def answers() -> bool:
            assert proc.poll() is None, (directory / "redis.log").read_text()
            try:
                return bool(probe.ping())
            except redis.RedisError:
                return False

        wait_until(answers, timeout=10, interval=0.05)
        probe.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
