"""Where a task's egress proxy may connect: its allow-list, checked after resolving.

A task names the hosts it needs (`api.example.com`, `*.example.org`); its program
asks the proxy (egress_proxy.py) for a host and a port. The proxy connects only if

1. the host matches one of the task's patterns (a `*.` pattern matches names below
   the domain, not the domain itself), and
2. every address the host resolves to is an ordinary public one: never loopback,
   private, link-local (169.254.169.254 is the metadata server, which hands out the
   project's credentials), shared, multicast, reserved or unspecified, nor an IPv6
   form that embeds such an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64's
   64:ff9b::/96, 6to4's 2002::/16) or a Teredo or NAT64 local-use address.

and then connects to an address it checked, never to a second resolution (a DNS
answer that changes in between, DNS rebinding, cannot slip through).

These are the rules of the API's webhook guard (api/adapters/webhook_http.py),
written again here: the runner and the API share no code (they meet over HTTP), and
the runner's copy also unwraps the IPv6 forms Python 3.11's `is_global` misses.

`dev_hosts` (the API's EGRESS_DEV_HOSTS, for tests and `make dev`, refused on Cloud
Run) maps a host on the task's list to a loopback address and port of the machine: a
stand-in for an external API. Only those hosts skip the address rules.
"""

from __future__ import annotations

import ipaddress
import socket

# Names of metadata servers, refused whatever they resolve to.
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
SIXTOFOUR = ipaddress.ip_network("2002::/16")
TEREDO = ipaddress.ip_network("2001::/32")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
MAX_HOST_CHARS = 253


class EgressRefused(Exception):
    """The proxy will not connect there; the message is the reason recorded."""


def address_refusal(address: str) -> str | None:
    """Why a connection to this IP address is refused, or None when it may be made."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        why = address_refusal(str(embedded))
        return f"{address} embeds {why}" if why else None
    if ip in NAT64_LOCAL or ip in TEREDO or ip in IPV4_COMPATIBLE:
        return f"{address} is a translation address"
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{kind}"):
            suffix = " (the metadata server)" if str(ip) == "169.254.169.254" else ""
            return f"{address} is {kind.replace('_', '-')}{suffix}"
    # is_global is False for the rest: shared (100.64/10), documentation, benchmarking...
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address):
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in SIXTOFOUR:
        return ip.sixtofour
    return None


def normalize_host(host: str) -> str:
    """The host as the patterns are matched: lower case, no trailing dot, no brackets.

    :raises EgressRefused: not a host name nor an IP address.
    """
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if _ip(name) is not None:
        return name
    if not name or len(name) > MAX_HOST_CHARS or not set(name) <= HOST_CHARS:
        raise EgressRefused(f"{host[:100]!r} is not a host name")
    if any(not label or len(label) > 63 for label in name.split(".")):
        raise EgressRefused(f"{host[:100]!r} is not a host name")
    return name


def host_matches(host: str, patterns: list[str]) -> bool:
    """`api.example.com` matches itself; `*.example.org` matches `a.example.org` and
    `a.b.example.org`, not `example.org`. `host` is normalized."""
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


class EgressPolicy:
    """One task's allow-list (and, in development, its loopback stand-ins)."""

    def __init__(self, allow: list[str], dev_hosts: dict[str, str] | None = None) -> None:
        self.allow = list(allow)
        self.dev_hosts = {normalize_host(h): _host_port(t) for h, t in (dev_hosts or {}).items()}

    def resolve(self, host: str, port: int) -> tuple[str, list[tuple]]:
        """The normalized host and the checked (family, sockaddr) pairs to try, in order.

        :raises EgressRefused: with the reason.
        """
        name = normalize_host(host)
        if not 0 < port < 65536:
            raise EgressRefused(f"port {port} is not a port")
        ip = _ip(name)
        if ip is not None:
            # An address literal is on no list of names; its own rules say why first.
            why = address_refusal(name)
            raise EgressRefused(why or f"{name} is an address; this task's list names hosts")
        if name in METADATA_HOSTS:
            raise EgressRefused(f"{name} is the metadata server")
        if not host_matches(name, self.allow):
            raise EgressRefused(f"{name} is not on this task's allow-list")
        if name in self.dev_hosts:  # a loopback stand-in, by the operator's dev setting
            address, mapped_port = self.dev_hosts[name]
            return name, [(_family(address), (address, mapped_port))]
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise EgressRefused(f"{name} does not resolve") from None
        targets = list(dict.fromkeys((info[0], info[4][:2]) for info in infos))
        if not targets:
            raise EgressRefused(f"{name} does not resolve")
        # Any refused address refuses the host: the next answer could be that one.
        for _, sockaddr in targets:
            why = address_refusal(str(sockaddr[0]))
            if why:
                raise EgressRefused(f"{name} resolves to {why}")
        return name, targets


def _ip(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _host_port(target: str) -> tuple[str, int]:
    """ "127.0.0.1:8080" or "[::1]:8080" as (address, port)."""
    address, _, port = target.rpartition(":")
    address = address.strip("[]")
    if _ip(address) is None or not port.isdigit():
        raise ValueError(f"a dev host maps to ADDRESS:PORT, not {target!r}")
    return address, int(port)
