"""Which address a request comes from, as far as the app can trust it.

Streamlit sees the address of whoever opened the connection: the browser, or a proxy in front
of the app. Behind a load balancer every browser would share the proxy's address, so
X-Forwarded-For is read, but only when the connection comes from a proxy listed in
TRUSTED_PROXIES; anyone else could write any address into that header. Of the addresses the
trusted proxies appended, the rightmost one that is not itself a trusted proxy is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = value.strip().strip("[]")
    if "%" in text:  # an IPv6 zone (fe80::1%eth0)
        text = text.split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[Network]
) -> bool:
    return any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address (normalised text), or ``unknown`` when there is none to read."""
    direct = _parse(peer or "")
    if direct is None:
        return UNKNOWN
    if not forwarded_for or not _trusted(direct, trusted):
        return str(direct)
    for hop in reversed(forwarded_for.split(",")):
        address = _parse(hop)
        if address is None:
            return str(direct)  # a garbled header: hold the proxy's own client to account
        if not _trusted(address, trusted):
            return str(address)
    return str(direct)


def parse_networks(value: str) -> list[Network]:
    """TRUSTED_PROXIES: addresses or networks separated by commas; ValueError names a bad one."""
    networks = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an address or network (e.g. 10.0.0.0/8)") from None
    return networks
