"""Refusals that no retry cures: a wrong password, a missing permission (NOPERM), a TLS
certificate the other side will not accept. At start-up (a worker, a CLI command, the first
use of a client) they end the wait for Redis at once, in one line that names the setting
to fix, instead of a traceback or a retry loop that looks like an outage.

:func:`probe` also runs, once Redis answers, the kinds of command minicelery needs under its
key prefix (a script, a write, a publish), so a user whose ACL misses one hears of it then,
not from the first task.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import OperationalError

#: What an error's text says when the password or the user was refused.
AUTH_WORDS = ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password",
              "Authentication required", "AUTH failed")  # fmt: skip
NOPERM = "NOPERM"
AUTH_ERRORS = {"AuthenticationError", "AuthenticationFailed",
               "AuthenticationWrongNumberOfArgsError"}  # fmt: skip

#: A script that writes (deletes) one key of the prefix: EVAL, DEL and the key pattern.
PROBE_SCRIPT = "return redis.call('DEL', KEYS[1])"


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def kind_of(exc: BaseException) -> str | None:
    """``"auth"``, ``"noperm"``, ``"tls"`` or None (an error worth retrying)."""
    import ssl  # only once something went wrong: it loads OpenSSL

    chain = _causes(exc)
    text = " ".join(str(one) for one in chain)
    names = {type(one).__name__ for one in chain}
    if NOPERM in text or names & {"NoPermissionError", "NoPermission"}:
        return "noperm"
    if names & AUTH_ERRORS or any(word in text for word in AUTH_WORDS):
        return "auth"
    if any(isinstance(one, ssl.SSLError) for one in chain) or "[SSL:" in text:
        return "tls"
    return None


def refusal(
    exc: BaseException, shown_url: str, setting: str, ssl_setting: str
) -> OperationalError | None:
    """The one-line error for ``exc`` when it is a refusal (None when worth retrying)."""
    kind = kind_of(exc)
    if kind is None:
        return None
    reason = str(exc).rstrip(".") or type(exc).__name__
    head = f"Cannot connect to {shown_url}"
    if kind == "auth":
        return OperationalError(
            f"{head}: Redis refused the user or password ({reason}): check them in {setting}"
        )
    if kind == "noperm":
        return OperationalError(
            f"{head}: the Redis user lacks a permission minicelery needs ({reason}): grant it "
            f"(see the ACL line in the documentation) or use another user in {setting}"
        )
    return OperationalError(
        f"{head}: the TLS handshake failed ({reason}): check {ssl_setting} "
        "(ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs)"
    )


def probe(client: Any, prefix: str) -> None:
    """Run once what every worker and client needs (a script writing a key of ``prefix``, a
    publish on its channels); raises the client's error for a refusal."""
    key = f"{prefix}:probe"
    client.execute_command("EVAL", PROBE_SCRIPT, 1, key)
    client.execute_command("PUBLISH", f"{prefix}:probe", "")
