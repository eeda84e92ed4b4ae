"""Where a webhook may be sent: URL rules at registration, and global addresses only
unless LLMSCHED_WEBHOOK_ALLOW_PRIVATE is set.

Checking the URL's host once is not enough to keep events away from internal services:
a name can resolve to a private address, or start doing so after registration (DNS
rebinding). So the sender resolves the name itself at every connection, checks every
address it gets, and connects to a checked address (TLS still verifies the name).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from scheduler_core.webhooks.errors import InvalidWebhookUrlError, WebhookTargetRefusedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_PRIVATE_ENV = "LLMSCHED_WEBHOOK_ALLOW_PRIVATE"
EXAMPLE = "e.g. https://example.com/hooks/llmsched"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _shown(url: str) -> str:
    """`url` fit for an error message: credentials replaced, control characters escaped."""
    return repr(redact_url(url)[:200])


def redact_url(url: str) -> str:
    """`url` without its credentials (user:password@), which must never be shown."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.rpartition("@")[2] if "@" in url else url
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def check_url(url: object) -> str:
    """The URL as stored (surrounding spaces removed), or one InvalidWebhookUrlError
    naming its problem."""
    if not isinstance(url, str):
        raise InvalidWebhookUrlError(f"webhook URL must be a string, not {type(url).__name__}")
    if _CONTROL.search(url):
        raise InvalidWebhookUrlError(
            f"webhook URL {_shown(url)} contains a control character (such as CR, LF or "
            "TAB), which could inject headers: remove it"
        )
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhookUrlError(
            f"webhook URL {_shown(url)} is not a valid URL ({exc}), {EXAMPLE}"
        ) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidWebhookUrlError(
            f"webhook URL {_shown(url)} is not an absolute http:// or https:// URL, {EXAMPLE}"
        )
    if "@" in parts.netloc:
        raise InvalidWebhookUrlError(
            f"webhook URL {_shown(url)} contains credentials (user:password@): they would be "
            "stored and shown in plain text; remove them and have the receiver check the "
            "X-Webhook-Signature header made with the endpoint's secret instead"
        )
    host = parts.hostname or ""
    if not host:
        raise InvalidWebhookUrlError(f"webhook URL {_shown(url)} has no host, {EXAMPLE}")
    if port is not None and not 0 < port < 65536:
        raise InvalidWebhookUrlError(f"webhook URL {_shown(url)} has port {port}, not in 1-65535")
    problem = _host_problem(host, bracketed=parts.netloc.rpartition("@")[2].startswith("["))
    if problem is not None:
        raise InvalidWebhookUrlError(f"webhook URL {_shown(url)} has {problem}")
    try:
        httpx.URL(url)  # the sender's own parser must accept it too
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidWebhookUrlError(
            f"webhook URL {_shown(url)} is refused by the HTTP client ({exc}), {EXAMPLE}"
        ) from None
    return url


def _host_problem(host: str, *, bracketed: bool) -> str | None:
    if bracketed:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return f"an invalid IPv6 address {host!r}"
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return f"an invalid host name {host!r} (not a valid internationalised domain name)"
    labels = ascii_host.rstrip(".").split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        return (
            f"an invalid host name {host!r}: use letters, digits, '-' and '.' "
            "(a domain name or an IP address)"
        )
    return None


def non_global(address: IPAddress) -> str | None:
    """What kind of non-global address `address` is, or None for a global one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return non_global(embedded)
    kinds = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (not address.is_global, "a non-global (reserved or shared) address"),
    )
    return next((kind for flagged, kind in kinds if flagged), None)


def _refusal(host: str, address: IPAddress, kind: str) -> WebhookTargetRefusedError:
    where = f"{host!r} is" if host == str(address) else f"{host!r} resolves to {address},"
    return WebhookTargetRefusedError(
        f"webhook host {where} {kind}: loopback, private, link-local and other non-global "
        f"targets are refused; for a receiver on this machine or network set "
        f"{ALLOW_PRIVATE_ENV}=1 (where endpoints are added and where events are sent)"
    )


def check_addresses(host: str, addresses: Iterable[str]) -> list[IPAddress]:
    """`addresses` parsed, or WebhookTargetRefusedError if any of them is not global."""
    parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    for address in parsed:
        kind = non_global(address)
        if kind is not None:
            raise _refusal(host, address, kind)
    return parsed


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_target(url: str) -> None:
    """At registration: refuse a host that is, or now resolves to, a non-global address.

    A name that does not resolve here is accepted (it may resolve only where the sender
    runs); the sender checks every address again when it connects.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    literal = _literal(host)
    if literal is not None:
        check_addresses(host, [str(literal)])
        return
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        raise _refusal(host, ipaddress.IPv4Address("127.0.0.1"), "a loopback address")
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    check_addresses(host, [str(info[4][0]) for info in infos])


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects only to global addresses (unless allowed).

    The host is resolved here and the connection made to a checked address, so the
    address that is checked is the address connected to: a name that resolves to a
    private address at delivery time (DNS rebinding) is refused before anything is sent.
    """

    def __init__(self, allow_private: Callable[[], bool]) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.allow_private():
            targets = [host]
        else:
            literal = _literal(host)
            if literal is not None:
                check_addresses(host, [str(literal)])
                targets = [host]
            else:
                loop = asyncio.get_running_loop()
                try:
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                except OSError as exc:
                    raise httpcore.ConnectError(f"{host}: {exc}") from exc
                addresses = check_addresses(host, [str(i[4][0]) for i in infos])
                targets = list(dict.fromkeys(str(a) for a in addresses))
        error: Exception | None = None
        for target in targets:
            try:
                return await self.inner.connect_tcp(
                    target,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not sent over Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a GuardedBackend (environment proxies are not used: the
    address connected to must be the receiver's, to be checked)."""

    def __init__(self, allow_private: Callable[[], bool]) -> None:
        super().__init__()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=GuardedBackend(allow_private),
        )
