"""The address part of a ``user_ipaddress`` that may carry a port."""

from __future__ import annotations


def without_port(ip: str) -> str:
    """``ip`` without a port: ``1.2.3.4:80`` -> ``1.2.3.4`` and
    ``[2001:db8::1]:443`` -> ``2001:db8::1`` (brackets removed too). Text with
    two colons or more and no brackets is an IPv6 address and stays whole."""
    if ip.startswith("["):
        end = ip.find("]")
        return ip[1:end] if end > 0 else ip
    if ip.count(":") == 1:
        return ip.partition(":")[0]
    return ip
