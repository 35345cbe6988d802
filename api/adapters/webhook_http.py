"""POSTing to a user's webhook URL without letting it reach what it must not (SSRF).

A webhook URL is the user's to choose, and the API calls it from inside the
project's network: it must not become a way to reach the metadata server
(169.254.169.254, which hands out the API's own credentials), loopback, or any
private address. So each attempt:

1. checks the URL (https only; http only to loopback when WEBHOOK_ALLOW_LOOPBACK is
   set for local development);
2. resolves the host and refuses it if *any* address is loopback (unless allowed),
   link-local, private, unique-local, multicast, reserved or otherwise not global;
3. connects to the address it checked, not to a second resolution, so a DNS answer
   that changes between check and connect (DNS rebinding) cannot slip through; TLS
   still verifies the certificate against the host name (urllib3's
   `server_hostname` / `assert_hostname`);
4. never follows a redirect itself: each `Location` goes through 1-3 again, up to
   WEBHOOK_MAX_REDIRECTS.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from api import config


class WebhookRefused(Exception):
    """The URL (or a redirect) points somewhere a webhook may not go."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # with the query string
    address: str  # the checked IP address to connect to


# NAT64's well-known prefix (RFC 6052): 64:ff9b::a.b.c.d reaches a.b.c.d through a
# translator, so it is as inside as the address it embeds.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form reaches: IPv4-mapped, NAT64, 6to4 or Teredo."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def _allowed(address: str, allow_loopback: bool) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_ipv4(ip) or ip
    if ip.is_loopback:
        return allow_loopback
    # is_global is False for private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
    # (169.254/16, fe80::/10), shared (100.64/10), reserved and documentation ranges.
    return ip.is_global and not ip.is_multicast


def resolve(url: str, *, allow_loopback: bool) -> Target:
    """Check `url` and resolve its host to one address it may connect to.

    :raises WebhookRefused: with the reason, for a person.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WebhookRefused(f"not a valid URL: {error}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookRefused("must be an https:// URL with a host")
    if parts.username or parts.password:
        raise WebhookRefused("must not carry a user name or password")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookRefused(f"the host {host!r} does not resolve") from None
    addresses = sorted({str(info[4][0]) for info in infos})  # the IP address, as text
    refused = [a for a in addresses if not _allowed(a, allow_loopback)]
    if refused or not addresses:
        raise WebhookRefused(
            f"the host {host!r} resolves to {', '.join(refused) or 'nothing'}: loopback, "
            "link-local, private and other non-public addresses are refused"
        )
    loopback_only = all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)
    if parts.scheme == "http" and not (allow_loopback and loopback_only):
        raise WebhookRefused(
            "must be https:// (http:// only to loopback, with WEBHOOK_ALLOW_LOOPBACK=true)"
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, addresses[0])


def post(url: str, body: bytes, headers: dict[str, str], *, allow_loopback: bool) -> int:
    """POST `body` to `url` (following checked redirects); the final status code.

    :raises WebhookRefused: the URL or a redirect is refused.
    :raises OSError: the receiver could not be reached (urllib3's errors included).
    """
    import urllib3

    for _ in range(config.WEBHOOK_MAX_REDIRECTS + 1):
        target = resolve(url, allow_loopback=allow_loopback)
        timeout = urllib3.Timeout(total=config.WEBHOOK_TIMEOUT_SECONDS)
        pool: urllib3.HTTPConnectionPool
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                target.address,
                target.port,
                server_hostname=target.host,
                assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED",
                timeout=timeout,
                retries=False,
            )
        else:
            pool = urllib3.HTTPConnectionPool(
                target.address, target.port, timeout=timeout, retries=False
            )
        with pool:
            try:
                reply = pool.urlopen(
                    "POST",
                    target.path,
                    body=body,
                    headers={**headers, "Host": _host_header(target)},
                    redirect=False,
                    preload_content=False,
                )
            except urllib3.exceptions.HTTPError as error:
                raise OSError(str(error)) from error
            reply.release_conn()
        location = reply.headers.get("Location")
        if reply.status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        return reply.status
    raise WebhookRefused(f"more than {config.WEBHOOK_MAX_REDIRECTS} redirects")


def _host_header(target: Target) -> str:
    default = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == default else f"{host}:{target.port}"
