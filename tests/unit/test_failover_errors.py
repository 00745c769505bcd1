"""A demoted master's refusals (READONLY, UNBLOCKED) are connection errors: retried, never
taken for the command's own failure."""

from __future__ import annotations

import pytest
import redis

from minicelery.exceptions import ImproperlyConfigured
from minicelery.redislayer import errors
from minicelery.redislayer.resp import reply_error
from minicelery.redislayer.sentinel import master_name, parse
from minicelery.redislayer.tls import cert_reqs, split_url, ssl_kwargs


@pytest.mark.parametrize(
    "text",
    [
        "READONLY You can't write against a read only replica.",
        "UNBLOCKED force unblock from blocking operation, instance state changed",
    ],
)
def test_a_demoted_masters_reply_is_a_connection_error(text: str) -> None:
    exc = reply_error(text)
    assert isinstance(exc, errors.REDIS_ERRORS)
    assert "unreachable" in str(errors.translated("publish", exc))


def test_redis_pys_readonly_error_is_retried_too() -> None:
    errors.adopt_redis_py()
    assert isinstance(redis.exceptions.ReadOnlyError("x"), errors.REDIS_ERRORS)


def test_sentinel_urls_give_the_sentinels_and_the_masters_credentials() -> None:
    parsed = parse("sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2;sentinel://10.0.0.3:1")
    assert parsed.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 1)]
    assert (parsed.password, parsed.db) == ("pw", 2)


def test_a_missing_master_name_names_the_setting() -> None:
    with pytest.raises(ImproperlyConfigured, match="result_backend_transport_options"):
        master_name({}, "result_backend_transport_options")


def test_tls_keys_in_celerys_spellings() -> None:
    import ssl

    assert cert_reqs("CERT_REQUIRED") == cert_reqs("required") == ssl.CERT_REQUIRED
    assert cert_reqs(ssl.CERT_NONE) == ssl.CERT_NONE
    assert ssl_kwargs({"ssl_cert_reqs": "none"}) == {
        "ssl_cert_reqs": ssl.CERT_NONE,
        "ssl_check_hostname": False,
    }
    url, taken = split_url("rediss://h:6380/0?ssl_cert_reqs=required&client_name=x")
    assert (url, taken) == ("rediss://h:6380/0?client_name=x", {"ssl_cert_reqs": "required"})
    with pytest.raises(ImproperlyConfigured, match="ssl_cert_reqs"):
        cert_reqs("sometimes")


def test_a_sentinel_lists_passwords_are_hidden_in_logs() -> None:
    from minicelery.redislayer.connect import redact

    assert redact("sentinel://:pw@a:1;sentinel://:pw@b:2") == "sentinel://:**@a:1;sentinel://:**@b:2"


def test_a_sentinel_result_backend_needs_its_own_master_name() -> None:
    from minicelery import Celery

    app = Celery("b", broker="memory://sentinel-backend", backend="sentinel://127.0.0.1:1",
                 broker_connection_retry_on_startup=False, set_as_current=False)  # fmt: skip
    with pytest.raises(ImproperlyConfigured, match="result_backend_transport_options"):
        app.backend  # noqa: B018 - opening it is the check


def test_wait_for_replicas_is_checked() -> None:
    from minicelery.redislayer import replicas

    class Client:
        pass

    client = Client()
    replicas.configure(client, {"wait_for_replicas": 2, "wait_for_replicas_timeout": 0.25}, "o")
    assert replicas.wanted(client) == (2, 250)
    with pytest.raises(ImproperlyConfigured, match=r"o\['wait_for_replicas'\]"):
        replicas.configure(client, {"wait_for_replicas": "all"}, "o")
    assert replicas.writes([("GET", "k"), ("EVALSHA", "x")])
    assert not replicas.writes([("GET", "k"), ("MGET", "a")])
