"""Where a webhook may be sent (SSRF): http(s) URLs without credentials whose
host resolves only to public addresses.

The check runs when an endpoint is created AND before every delivery, and a
delivery connects to the very address that was checked (`Target.address`), not
to whatever a second DNS lookup answers: a name that resolved to a public
address at the check and to 127.0.0.1 a moment later (DNS rebinding) still
reaches the public one. With WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true (tests, a
receiver on the same network) only the URL's form is checked.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from transactions.webhooks.errors import UrlNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

# Cloud metadata services (AWS, GCP, Azure, OpenStack...; AWS's IPv6 one). Both
# are covered by the link-local and private checks too: named so a change to
# those never lets them through.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`, `port`) and what to name
    the host in the Host header and TLS (`hostname`)."""

    scheme: str
    hostname: str
    port: int
    address: str
    path: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return host if self.port == default else f"{host}:{self.port}"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_is_public(address: IPAddress) -> bool:
    """False for private, loopback, link-local, multicast, reserved,
    unspecified, shared (100.64/10) and metadata addresses, also when written
    as IPv6 (::ffff:127.0.0.1)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None and not address_is_public(embedded):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return False
    return not (
        address in METADATA_ADDRESSES
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def _is_metadata(address: IPAddress) -> bool:
    embedded = _embedded_ipv4(address)
    return address in METADATA_ADDRESSES or (
        embedded is not None and embedded in METADATA_ADDRESSES
    )


def _refuse(reason: str | Promise) -> UrlNotAllowed:
    return UrlNotAllowed(reason=reason)


def url_parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, hostname, port, path) of a webhook URL, or UrlNotAllowed."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise _refuse(_("it must be an http or https URL of at most 2048 characters."))
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise _refuse(_("it contains spaces or control characters."))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse(_("it is not a valid URL.")) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _refuse(_("only http and https URLs are allowed."))
    if "@" in parts.netloc:
        raise _refuse(_("it must not contain a user name or password."))
    hostname = parts.hostname or ""
    if not hostname:
        raise _refuse(_("it has no host."))
    if port == 0:
        raise _refuse(_("it is not a valid URL."))
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        try:
            hostname = hostname.rstrip(".").encode("idna").decode("ascii")
        except UnicodeError:
            raise _refuse(_("its host name is not valid.")) from None
        if not hostname:
            raise _refuse(_("its host name is not valid.")) from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, hostname, port or (443 if scheme == "https" else 80), path


def _resolve(hostname: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _refuse(_("its host name could not be resolved.")) from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        try:
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:  # a scoped IPv6 address ("fe80::1%eth0")
            raise _refuse(
                _("its host resolves to a private or reserved address.")
            ) from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _refuse(_("its host name could not be resolved."))
    return addresses


def url_target(url: str) -> Target:
    """The URL checked and resolved: every address its host resolves to must be
    public (unless WEBHOOKS_ALLOW_PRIVATE_NETWORKS; a cloud metadata address
    never), and the first is the one to connect to. UrlNotAllowed says why
    not."""
    scheme, hostname, port, path = url_parse(url)
    addresses = _resolve(hostname, port)
    # Cloud metadata services hand out credentials: never, whatever the setting.
    if any(_is_metadata(address) for address in addresses):
        raise _refuse(_("its host resolves to a cloud metadata address."))
    if not settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS and not all(
        address_is_public(address) for address in addresses
    ):
        raise _refuse(_("its host resolves to a private or reserved address."))
    return Target(
        scheme=scheme,
        hostname=hostname,
        port=port,
        address=str(addresses[0]),
        path=path,
    )
