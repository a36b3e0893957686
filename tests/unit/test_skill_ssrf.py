"""The SSRF guard's edges: IPv4 carried inside IPv6 is judged as IPv4, and a refused URL never echoes its text."""

from __future__ import annotations

import pytest

from incident_loop.skills import ssrf
from incident_loop.skills.errors import ExternalError, SkillInputError, TargetNotAllowed


@pytest.mark.parametrize("address", [
    "64:ff9b::a00:1",        # NAT64 of 10.0.0.1
    "64:ff9b::a9fe:a9fe",    # NAT64 of the instance metadata address
    "64:ff9b:1::a00:1",      # local-use NAT64
    "2002:a9fe:a9fe::1",     # 6to4 of 169.254.169.254
    "::a9fe:a9fe",           # IPv4-compatible
    "::ffff:127.0.0.1",      # IPv4-mapped
])
def test_ipv4_inside_ipv6_is_refused_when_the_ipv4_address_is_private(address: str) -> None:
    with pytest.raises(TargetNotAllowed):
        ssrf.check("https://hooks.example.com/x", "", resolver=lambda host, port: [address])


def test_nat64_of_a_public_address_is_allowed() -> None:
    target = ssrf.check("https://hooks.example.com/x", "", resolver=lambda host, port: ["64:ff9b::808:808"])
    assert target.ip == "64:ff9b::808:808"


def test_a_url_that_does_not_parse_is_refused_without_quoting_it() -> None:
    secret_like = "whsec_AAAA whsec_BBBB"
    with pytest.raises(SkillInputError) as refused:
        ssrf.check(f"https://{secret_like}/x", "", resolver=lambda host, port: ["93.184.216.34"])
    assert "whsec_" not in str(refused.value)


@pytest.mark.parametrize("url", ["https://hooks..example.com/in", "https://" + "a" * 64 + ".example.com/in"])
def test_a_host_name_no_lookup_can_resolve_is_the_callers_input_not_a_retryable_dns_error(url: str) -> None:
    """An empty label, or one over 63 bytes, fails IDNA encoding before any lookup: retrying it (a dns_error,
    retryable) kept the run going round its queue for hours, into the DLQ."""
    with pytest.raises(SkillInputError, match="is not a valid host name") as caught:
        ssrf.check(url, "")
    assert not caught.value.retryable


def test_a_host_that_does_not_resolve_now_is_still_a_retryable_dns_error() -> None:
    def down(host: str, port: int) -> list[str]:
        raise OSError("Temporary failure in name resolution")

    with pytest.raises(ExternalError) as caught:
        ssrf.check("https://hooks.example.com/in", "", resolver=down)
    assert (caught.value.code, caught.value.retryable) == ("dns_error", True)
