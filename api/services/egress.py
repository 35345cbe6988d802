"""A task's `network` field (DESIGN section 16): the hosts it asks to reach, checked
against the operator's ceiling, EGRESS_ALLOWED_DOMAINS.

`network: {"allow": ["api.example.com", "*.example.org"]}` asks for egress through the
runner's proxy to those hosts (a `*.` pattern: any name below the domain, not the
domain itself). The ceiling is a list of the same patterns, or `*` for any domain; a
task's pattern must fall within one of them, or the task is refused (422
`egress_not_allowed`, naming the ceiling). `network: true` is the older, weaker
option: the whole network, where ALLOW_TASK_NETWORK is set.
"""

from __future__ import annotations

import re

ANY_DOMAIN = "*"
LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOST_PATTERN = re.compile(rf"^(\*\.)?{LABEL}(\.{LABEL})*$")


def normalize_pattern(pattern: str) -> str:
    """A pattern in lower case without a trailing dot.

    :raises ValueError: not a host name or `*.` and a domain (an IP address is not
        a pattern: a task names hosts, whose addresses the proxy checks).
    """
    name = pattern.strip().lower().rstrip(".")
    if not HOST_PATTERN.match(name) or name.replace(".", "").replace("*", "").isdigit():
        raise ValueError(f"{pattern!r} is not a host name or *.domain pattern")
    return name


def within(pattern: str, ceiling: str) -> bool:
    """Whether every host `pattern` matches is matched by `ceiling`."""
    if ceiling == ANY_DOMAIN or pattern == ceiling:
        return True
    if ceiling.startswith("*."):
        return pattern.removeprefix("*.").endswith(ceiling[1:])
    return False


def beyond_ceiling(patterns: list[str], ceiling: list[str]) -> list[str]:
    """The patterns no ceiling pattern covers."""
    return [p for p in patterns if not any(within(p, c) for c in ceiling)]
