"""Registration refuses unsafe input (URLs, short secrets, non-global targets) before
writing anything; the sender refuses a non-global address it resolves at delivery time
(DNS rebinding); listings never show secrets or URL credentials; secrets are encrypted
at rest with LLMSCHED_SECRET_KEY."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from scheduler_core import SchedulerService
from scheduler_core.webhooks import (
    MIN_SECRET_LENGTH,
    DeliveryStatus,
    InvalidWebhookSecretError,
    InvalidWebhookUrlError,
    WebhookDispatcher,
    WebhookSecretKeyError,
    WebhookTargetRefusedError,
    add_webhook_endpoint,
    install_webhooks,
    list_webhook_deliveries,
    list_webhook_endpoints,
    set_webhook_endpoint_enabled,
    verify,
)
from scheduler_core.webhooks.models import ENDPOINTS
from scheduler_core.webhooks.sealing import unseal
from tests.conftest import wait_for
from tests.webhooks.conftest import ReceiverFactory
from tests.webhooks.support import FAST, delivered_payloads, drain, wait_deliveries

Hooked = tuple[SchedulerService, WebhookDispatcher]
SECRET = "a-receiver-secret-of-32-chars-00"
PUBLIC = "93.184.215.14"  # a global address (nothing is sent to it in these tests)


def stored_secrets(svc: SchedulerService) -> list[str]:
    query = sa.select(ENDPOINTS.c.secret).order_by(ENDPOINTS.c.endpoint_id)
    return list(svc.db.read(lambda c: c.execute(query).scalars().all()))


@pytest.fixture
def guarded(
    open_service: Callable[..., SchedulerService],
) -> Any:
    """A service with the product default: non-global targets refused; sender started."""
    svc = open_service()
    svc.register("noop", lambda params: [])
    dispatcher = install_webhooks(svc, **FAST)
    assert dispatcher.settings.allow_private is False
    dispatcher.start()
    yield svc, dispatcher
    dispatcher.stop(timeout=5)


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Names this test resolves (name -> address); every other name resolves as usual."""
    names: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in names:
            return real(names[name], port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://example.com/hooks\r\nX-Injected: 1", "control character"),
        ("https://example.com/ho\noks", "control character"),
        ("https://exa\tmple.com/hooks", "control character"),
        ("https://example.com/\x00", "control character"),
        ("ftp://example.com/x", "not an absolute http:// or https:// URL"),
        ("javascript:alert(1)", "not an absolute http:// or https:// URL"),
        ("https:///hooks", "has no host"),
        ("https://exa mple.com/hooks", "invalid host name"),
        ("https://exa$mple.com/hooks", "invalid host name"),
        ("https://-bad.example/hooks", "invalid host name"),
        ("https://example.com:0/hooks", "port 0, not in 1-65535"),
        ("https://example.com:65536/hooks", "not a valid URL"),
        ("https://example.com:http/hooks", "not a valid URL"),
        ("https://[::1/hooks", "not a valid URL"),
    ],
)
def test_bad_urls_are_refused_with_their_problem(hooked: Hooked, url: str, problem: str) -> None:
    svc, _ = hooked
    with pytest.raises(InvalidWebhookUrlError) as info:
        add_webhook_endpoint(svc, url, secret=SECRET)
    message = str(info.value)
    assert problem in message
    assert "\n" not in message and "\r" not in message
    assert list_webhook_endpoints(svc) == []


def test_url_credentials_are_refused_without_showing_them(hooked: Hooked) -> None:
    svc, _ = hooked
    with pytest.raises(InvalidWebhookUrlError) as info:
        add_webhook_endpoint(svc, "https://alice:hunter2-pass@example.com/hooks")
    message = str(info.value)
    assert "credentials" in message and "X-Webhook-Signature" in message
    assert "hunter2-pass" not in message and "alice" not in message
    assert list_webhook_endpoints(svc) == []


def test_idna_and_ip_literal_urls_are_accepted(hooked: Hooked) -> None:
    svc, _ = hooked
    for url in ("https://bücher.example/hooks", "http://[2001:db8::1]:8080/h", "HTTPS://Ex.COM"):
        assert add_webhook_endpoint(svc, url).url == url


@pytest.mark.parametrize("secret", ["x", "s" * (MIN_SECRET_LENGTH - 1), "   ", ""])
def test_short_or_empty_secrets_are_refused(hooked: Hooked, secret: str) -> None:
    svc, _ = hooked
    with pytest.raises(InvalidWebhookSecretError) as info:
        add_webhook_endpoint(svc, "https://example.com/hooks", secret=secret)
    assert ("too short" in str(info.value)) or ("must not be empty" in str(info.value))
    assert list_webhook_endpoints(svc) == []


@pytest.mark.parametrize(
    "secret",
    [
        "line-one-of-a-long-secret\nline-two",
        " a-secret-with-a-leading-space-00",
        "a-secret-with-a-NUL\x00-in-the-middle",
    ],
)
def test_secrets_must_be_one_clean_line(hooked: Hooked, secret: str) -> None:
    svc, _ = hooked
    with pytest.raises(InvalidWebhookSecretError, match="one line") as info:
        add_webhook_endpoint(svc, "https://example.com/hooks", secret=secret)
    assert secret.strip() not in str(info.value)
    assert list_webhook_endpoints(svc) == []


def test_a_secret_of_the_minimum_length_is_accepted(hooked: Hooked) -> None:
    svc, _ = hooked
    secret = "k" * MIN_SECRET_LENGTH
    assert add_webhook_endpoint(svc, "https://example.com/h", secret=secret).secret == secret


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8080/h", "loopback"),
        ("http://localhost/h", "loopback"),
        ("http://api.localhost/h", "loopback"),
        ("http://[::1]/h", "loopback"),
        ("http://[::ffff:127.0.0.1]/h", "loopback"),
        ("http://10.1.2.3/h", "private"),
        ("http://192.168.0.10/h", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/h", "link-local"),
        ("http://0.0.0.0/h", "unspecified"),
        ("http://100.64.0.1/h", "non-global"),
        ("http://[64:ff9b::a00:1]/h", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_non_global_targets_are_refused_by_default(guarded: Hooked, url: str, kind: str) -> None:
    svc, _ = guarded
    with pytest.raises(WebhookTargetRefusedError) as info:
        add_webhook_endpoint(svc, url)
    assert kind in str(info.value) and "LLMSCHED_WEBHOOK_ALLOW_PRIVATE=1" in str(info.value)
    assert list_webhook_endpoints(svc) == []


def test_a_name_resolving_to_a_private_address_is_refused_at_registration(
    guarded: Hooked, fake_dns: dict[str, str]
) -> None:
    svc, _ = guarded
    fake_dns["intranet.example"] = "10.20.30.40"
    with pytest.raises(WebhookTargetRefusedError, match=r"resolves to 10\.20\.30\.40"):
        add_webhook_endpoint(svc, "https://intranet.example/hooks")
    fake_dns["public.example"] = PUBLIC
    assert add_webhook_endpoint(svc, "https://public.example/hooks").endpoint_id is not None


def test_dns_rebinding_is_refused_at_delivery_time(
    guarded: Hooked, receiver: ReceiverFactory, fake_dns: dict[str, str]
) -> None:
    """The name resolves to a global address when added, to 127.0.0.1 when sent: the
    sender checks the address it connects to, so nothing reaches the receiver."""
    svc, _ = guarded
    rec = receiver()
    fake_dns["rebind.example"] = PUBLIC
    add_webhook_endpoint(svc, f"http://rebind.example:{rec.port}/hooks")
    fake_dns["rebind.example"] = "127.0.0.1"
    svc.enqueue_job("noop")
    drain(svc)
    (failed,) = wait_deliveries(svc, DeliveryStatus.FAILED, 1)
    assert failed.attempts == 1  # refused at once: a policy, not a network hiccup
    assert failed.last_error is not None
    assert failed.last_error.startswith("target refused: webhook host 'rebind.example'")
    assert "resolves to 127.0.0.1, a loopback address" in failed.last_error
    assert rec.requests() == []


def test_allowing_private_targets_sends_to_the_resolved_address(
    hooked: Hooked, receiver: ReceiverFactory, fake_dns: dict[str, str]
) -> None:
    """The control for the test above: with the opt-in, the same name is delivered to,
    through the guarded connection (with the name as Host)."""
    svc, _ = hooked
    rec = receiver()
    fake_dns["rebind.example"] = "127.0.0.1"
    add_webhook_endpoint(svc, f"http://rebind.example:{rec.port}/hooks")
    svc.enqueue_job("e2e", {"name": "local"})
    drain(svc)
    wait_deliveries(svc, DeliveryStatus.DELIVERED, 1)
    (request,) = rec.requests()
    assert request["headers"]["Host"] == f"rebind.example:{rec.port}"


def test_turning_the_opt_in_off_stops_deliveries_to_stored_private_endpoints(
    hooked: Hooked, receiver: ReceiverFactory
) -> None:
    svc, dispatcher = hooked
    rec = receiver()
    add_webhook_endpoint(svc, rec.url)  # allowed when added
    install_webhooks(svc, allow_private=False)  # the running sender's settings change
    assert dispatcher.settings.allow_private is False
    svc.enqueue_job("e2e", {"name": "refused"})
    drain(svc)
    (failed,) = wait_deliveries(svc, DeliveryStatus.FAILED, 1)
    assert failed.last_error is not None
    assert "'127.0.0.1' is a loopback address" in failed.last_error
    assert rec.requests() == []


def test_listings_never_show_secrets_or_url_credentials(hooked: Hooked) -> None:
    svc, _ = hooked
    added = add_webhook_endpoint(svc, "http://127.0.0.1:9/hook", secret=SECRET)
    assert SECRET not in repr(added) and SECRET not in str(added)
    # A row written before credentials in URLs were refused.
    legacy: int = svc.db.write(
        lambda c: c.execute(
            sa.insert(ENDPOINTS)
            .values(
                url="https://bob:pa55word@example.com/legacy",
                secret=SECRET,
                events=[],
                enabled=True,
                created_at=added.created_at,
            )
            .returning(ENDPOINTS.c.endpoint_id)
        ).scalar_one()
    )
    svc.enqueue_job("e2e", {"name": "listed"})
    drain(svc)
    endpoints = list_webhook_endpoints(svc)
    assert [e.secret for e in endpoints] == [None, None]
    assert [e.url for e in endpoints] == [
        "http://127.0.0.1:9/hook",
        "https://***@example.com/legacy",
    ]
    toggled = set_webhook_endpoint_enabled(svc, legacy, False)  # nothing is sent to it
    assert toggled.secret is None and "pa55word" not in toggled.url
    shown = repr(endpoints) + repr(list_webhook_deliveries(svc)) + repr(toggled)
    assert SECRET not in shown and "pa55word" not in shown and "bob" not in shown
    assert {d.url for d in list_webhook_deliveries(svc)} <= {
        "http://127.0.0.1:9/hook",
        "https://***@example.com/legacy",
    }


def test_secrets_are_encrypted_at_rest_with_a_key(
    hooked: Hooked, receiver: ReceiverFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, _ = hooked
    monkeypatch.setenv("LLMSCHED_SECRET_KEY", Fernet.generate_key().decode())
    sealed, plain = receiver(), receiver()
    add_webhook_endpoint(svc, sealed.url, secret=SECRET)
    monkeypatch.delenv("LLMSCHED_SECRET_KEY")
    legacy_secret = "a-plain-secret-stored-before-the-key"
    add_webhook_endpoint(svc, plain.url, secret=legacy_secret)
    stored = stored_secrets(svc)
    assert stored[0].startswith("fernet:") and SECRET not in stored[0]
    assert stored[1] == legacy_secret  # no key: plain text (protected by the file's mode)

    monkeypatch.setenv("LLMSCHED_SECRET_KEY", Fernet.generate_key().decode() + ",")
    with pytest.raises(WebhookSecretKeyError):  # a wrong key can not decrypt it
        unseal(stored[0], endpoint_id=1)
    monkeypatch.delenv("LLMSCHED_SECRET_KEY")

    svc.enqueue_job("e2e", {"name": "no-key"})
    drain(svc)
    # The plain row is delivered; the encrypted one can not be signed without the key.
    wait_deliveries_by_status(svc, {DeliveryStatus.FAILED: 1, DeliveryStatus.DELIVERED: 1})
    (failed,) = list_webhook_deliveries(svc, "failed")
    assert failed.last_error is not None
    assert "secret is encrypted and LLMSCHED_SECRET_KEY is not set" in failed.last_error
    assert sealed.requests() == []
    (request,) = plain.requests()
    assert verify(legacy_secret, request["headers"], request["body"].encode())


def test_an_encrypted_secret_signs_with_the_right_key_only(
    hooked: Hooked, receiver: ReceiverFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, _ = hooked
    key, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("LLMSCHED_SECRET_KEY", key)
    rec = receiver()
    add_webhook_endpoint(svc, rec.url, secret=SECRET)
    monkeypatch.setenv("LLMSCHED_SECRET_KEY", other)
    svc.enqueue_job("e2e", {"name": "wrong-key"})
    drain(svc)
    (failed,) = wait_deliveries(svc, DeliveryStatus.FAILED, 1)
    assert failed.last_error is not None
    assert "can not be decrypted with LLMSCHED_SECRET_KEY" in failed.last_error
    assert key not in failed.last_error and other not in failed.last_error
    assert rec.requests() == []

    monkeypatch.setenv("LLMSCHED_SECRET_KEY", f"{other},{key}")  # rotating: old key kept
    svc.enqueue_job("e2e", {"name": "right-key"})
    drain(svc)
    wait_deliveries_by_status(svc, {DeliveryStatus.FAILED: 1, DeliveryStatus.DELIVERED: 1})
    (request,) = rec.requests()
    assert verify(SECRET, request["headers"], request["body"].encode())
    assert [p["run"]["status"] for p in delivered_payloads(rec)] == ["COMPLETED"]


def test_a_malformed_key_is_refused_at_registration_without_showing_it(
    hooked: Hooked, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, _ = hooked
    monkeypatch.setenv("LLMSCHED_SECRET_KEY", "not-a-fernet-key-but-secret")
    with pytest.raises(WebhookSecretKeyError) as info:
        add_webhook_endpoint(svc, "https://example.com/hooks", secret=SECRET)
    assert "LLMSCHED_SECRET_KEY is not a Fernet key" in str(info.value)
    assert "not-a-fernet-key-but-secret" not in str(info.value)
    assert list_webhook_endpoints(svc) == []


def wait_deliveries_by_status(
    svc: SchedulerService, counts: dict[DeliveryStatus, int], timeout: float = 10.0
) -> None:
    def done() -> bool:
        found = [d.status for d in list_webhook_deliveries(svc)]
        return {s: found.count(s) for s in counts} == counts and len(found) == sum(counts.values())

    wait_for(done, timeout=timeout, what=f"deliveries {counts}")
