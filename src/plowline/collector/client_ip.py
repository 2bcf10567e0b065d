"""The address of the client, as the collector records it in ``ip``.

By default it is the socket peer. Behind proxies the peer is the last proxy, so
when the peer is one of the configured trusted proxies the address is read from
the one header those proxies write (``X-Forwarded-For`` or ``Forwarded``). Each
proxy appends the address it received the request from, so the header is read
from the right: the first address that is not itself a trusted proxy is the
client. Anything to its left was written by the client or by proxies we do not
trust, and could be forged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Peers seen recently and whether they are trusted; bounded because peers are
# as many as clients.
_CACHE_SIZE = 4096


def address_text(token: str) -> str | None:
    """The address in a header entry (``1.2.3.4``, ``1.2.3.4:80``, ``::1``,
    ``[::1]`` or ``[::1]:80``, optionally quoted), as written; None when the entry
    holds no address."""
    token = token.strip().strip('"').strip()
    if token.startswith("["):
        token, bracket, _ = token[1:].partition("]")
        if not bracket:
            return None
    elif token.count(":") == 1:
        token = token.partition(":")[0]
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return None
    return token


def parse_address(token: str) -> IPAddress | None:
    """The address in a header entry (see :func:`address_text`), parsed.

    IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``) come back as IPv4.
    """
    text = address_text(token)
    if text is None:
        return None
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def forwarded_for(values: Iterable[bytes]) -> list[str]:
    """The ``for=`` values of ``Forwarded`` headers (RFC 7239), in order."""
    found = []
    for value in values:
        for element in value.decode("latin-1").split(","):
            for pair in element.split(";"):
                key, sep, item = pair.partition("=")
                if sep and key.strip().lower() == "for":
                    found.append(item)
    return found


def x_forwarded_for(values: Iterable[bytes]) -> list[str]:
    """The entries of ``X-Forwarded-For`` headers, in order.

    Several header lines count as one list joined by commas (RFC 9110 §5.3).
    """
    return [item for value in values for item in value.decode("latin-1").split(",")]


class ClientAddress:
    """Resolves the recorded address; build once, call :meth:`resolve` per request.

    ``trusted`` holds addresses and networks (``10.0.0.0/8``, ``fd00::/8``);
    ``header`` is ``x-forwarded-for`` or ``forwarded``.
    """

    def __init__(self, trusted: Iterable[str], header: str) -> None:
        self._networks = tuple(ipaddress.ip_network(t, strict=False) for t in trusted)
        self.header = header.lower()
        self._entries = forwarded_for if self.header == "forwarded" else x_forwarded_for
        self._trusted_peers: dict[str, bool] = {}

    @property
    def enabled(self) -> bool:
        """False when no proxy is trusted: the socket peer is always the answer."""
        return bool(self._networks)

    def resolve(self, peer: str | None, header_values: list[bytes]) -> str | None:
        """The client address for a request from ``peer`` carrying these values
        of the proxy header (empty when it had none)."""
        if peer is None or not self._networks or not self._peer_trusted(peer):
            return peer
        result = peer
        for token in reversed(self._entries(header_values)):
            address = parse_address(token)
            if address is None:
                # A garbled entry: what lies to its left cannot be trusted, and
                # the last trusted hop is the best-known address.
                return result
            result = str(address)
            if not self._trusted(address):
                return result
        # Every entry is a trusted proxy: the left-most one is the furthest out.
        return result

    def _peer_trusted(self, peer: str) -> bool:
        known = self._trusted_peers.get(peer)
        if known is None:
            address = parse_address(peer)
            known = address is not None and self._trusted(address)
            if len(self._trusted_peers) >= _CACHE_SIZE:
                self._trusted_peers.clear()
            self._trusted_peers[peer] = known
        return known

    def _trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._networks)
