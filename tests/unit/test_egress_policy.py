"""Where the egress proxy may connect (job_runner/egress_policy.py): the allow-list
patterns, and the addresses refused whatever a list says."""

from __future__ import annotations

import pytest
from job_runner.egress_policy import (
    EgressPolicy,
    EgressRefused,
    address_refusal,
    host_matches,
    normalize_host,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "fd00::1",
        "fd20:ce::254",  # a metadata server's IPv6 form is unique-local
        "100.64.0.1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "::8.8.8.8",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::808:808",  # NAT64 local-use
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "fe80::1%eth0",
    ],
)
def test_special_addresses_are_refused(address):
    assert address_refusal(address)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "151.101.1.69", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(address):
    assert address_refusal(address) is None


def test_the_metadata_server_is_named_in_the_reason():
    assert "metadata" in (address_refusal("169.254.169.254") or "")
    assert "metadata" in (address_refusal("::ffff:169.254.169.254") or "")


@pytest.mark.parametrize(
    ("host", "patterns", "matches"),
    [
        ("api.example.com", ["api.example.com"], True),
        ("api.example.com", ["example.com"], False),
        ("a.example.org", ["*.example.org"], True),
        ("a.b.example.org", ["*.example.org"], True),
        ("example.org", ["*.example.org"], False),
        ("badexample.org", ["*.example.org"], False),
        ("api.example.com", ["API.Example.com."], True),
        ("other.com", ["api.example.com", "*.example.org"], False),
    ],
)
def test_allow_list_patterns(host, patterns, matches):
    assert host_matches(host, patterns) is matches


@pytest.mark.parametrize("host", ["", "a b.com", "evil.com/x", "a..b", "x" * 64 + ".com", "ü.com"])
def test_what_is_not_a_host_name_is_refused(host):
    with pytest.raises(EgressRefused, match="not a host name"):
        normalize_host(host)


def test_hosts_are_compared_in_lower_case_without_a_trailing_dot():
    assert normalize_host("API.Example.COM.") == "api.example.com"
    assert normalize_host("[::1]") == "::1"


def test_a_host_off_the_list_is_refused_before_it_is_resolved():
    policy = EgressPolicy(["api.example.com"])
    with pytest.raises(EgressRefused, match="not on this task's allow-list"):
        policy.resolve("does-not-exist.invalid", 443)


def test_a_listed_name_that_resolves_to_loopback_is_refused():
    with pytest.raises(EgressRefused, match="resolves to 127.0.0.1 is loopback"):
        EgressPolicy(["localhost"]).resolve("localhost", 80)


def test_a_listed_name_that_does_not_resolve_is_refused():
    with pytest.raises(EgressRefused, match="does not resolve"):
        EgressPolicy(["*.invalid"]).resolve("nothing.invalid", 443)


def test_address_literals_are_refused_with_the_address_rule_first():
    policy = EgressPolicy(["*.example.org"])
    with pytest.raises(EgressRefused, match="metadata server"):
        policy.resolve("169.254.169.254", 80)
    with pytest.raises(EgressRefused, match="names hosts"):
        policy.resolve("8.8.8.8", 443)


def test_metadata_names_are_refused_even_when_listed():
    with pytest.raises(EgressRefused, match="metadata server"):
        EgressPolicy(["metadata.google.internal"]).resolve("metadata.google.internal", 80)


def test_a_dev_host_maps_a_listed_name_to_its_loopback_stand_in():
    policy = EgressPolicy(["api.test"], {"api.test": "127.0.0.1:8123"})
    assert policy.resolve("API.test", 443) == ("api.test", [(2, ("127.0.0.1", 8123))])
    # Only the listed, mapped name: another loopback name stays refused.
    with pytest.raises(EgressRefused):
        policy.resolve("localhost", 8123)


def test_a_dev_host_not_on_the_task_list_is_refused():
    policy = EgressPolicy(["other.test"], {"api.test": "127.0.0.1:8123"})
    with pytest.raises(EgressRefused, match="not on this task's allow-list"):
        policy.resolve("api.test", 443)


def test_a_dev_host_must_map_to_an_address_and_port():
    with pytest.raises(ValueError, match="ADDRESS:PORT"):
        EgressPolicy(["api.test"], {"api.test": "localhost:80"})
