"""std/tools' http_get: GET a URL on an allowed host, safely.

- **Hosts** must be allowed: ``FMFLOW_HTTP_ALLOW`` (comma-separated) or the
  ``allow`` of ``http_get_tool(…)``. An entry is a host (``docs.python.org``),
  every subdomain of one (``*.python.org``), an IP address (``[::1]`` for
  IPv6), each optionally with ``:PORT`` or ``:*``; without a port only 80 and
  443 are allowed. Nothing is allowed by default.
- **Addresses**: a name is resolved once per hop; when any of its addresses
  is private, loopback, link-local, multicast, reserved or otherwise not
  public, the request is refused before any connection. IP literals in every
  legacy form (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, IPv4-mapped and
  6to4 IPv6) are read as the address they stand for. ``allow_private=True``
  (``FMFLOW_HTTP_ALLOW_PRIVATE=1``) lifts this, for tests and intranets.
- **Pinning**: the connection goes to the checked address (the URL's host is
  replaced by it; the Host header and TLS server name stay the name, and the
  certificate is verified against the name), so a DNS answer that changes
  between the check and the connection cannot redirect it.
- **Redirects** are followed by hand, at most ``max_redirects`` (5), each hop
  checked as the first.
- **Limits**: ``timeout`` (10 s) for the whole fetch, redirects included;
  ``max_bytes`` (1 MB) of body after decompression (gzip and deflate are
  decoded a bounded piece at a time, so a compressed bomb stops at the
  limit; other encodings are refused); a larger body is an error, never cut
  silently. Proxy variables of the environment are ignored.

The body comes back as text (the charset of its Content-Type, else UTF-8).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import os
import socket
import time
import zlib
from dataclasses import dataclass
from urllib.parse import urljoin

ALLOW_ENV = "FMFLOW_HTTP_ALLOW"
PRIVATE_ENV = "FMFLOW_HTTP_ALLOW_PRIVATE"
REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_system_resolve = socket.getaddrinfo  # tests replace it: no name is ever looked up for real there


class HttpRefused(ValueError):
    """The fetch was refused or failed; the message says why."""


@dataclass(frozen=True)
class Policy:
    allow: tuple[str, ...]
    allow_private: bool = False
    max_bytes: int = 1_000_000
    timeout: float = 10.0
    max_redirects: int = 5


def policy_from_env() -> Policy:
    allow = tuple(p.strip() for p in os.environ.get(ALLOW_ENV, "").split(",") if p.strip())
    private = os.environ.get(PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")
    return Policy(allow=allow, allow_private=private)


def fetch(url: str, policy: Policy) -> str:
    """The body of ``url`` as text, under ``policy`` (see the module's docstring)."""
    import httpx

    deadline = time.monotonic() + policy.timeout
    with httpx.Client(trust_env=False, follow_redirects=False, verify=True) as client:
        for _hop in range(policy.max_redirects + 1):
            target = _Target.parse(url)
            target.check_allowed(policy)
            address = _checked_address(target, policy, deadline)
            location = _get(client, target, address, policy, deadline)
            if isinstance(location, str):
                return location
            url = urljoin(url, location.url)
    raise HttpRefused(f"http_get: more than {policy.max_redirects} redirects, last to {url}")


@dataclass
class _Redirect:
    url: str


@dataclass(frozen=True)
class _Target:
    url: object          # httpx.URL
    host: str            # lower case, no trailing dot, IPv6 without brackets
    port: int
    literal: "ipaddress.IPv4Address | ipaddress.IPv6Address | None"

    @classmethod
    def parse(cls, url: str) -> "_Target":
        import httpx

        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as error:
            raise HttpRefused(f"http_get: not a URL: {url!r} ({error})") from None
        if parsed.scheme not in ("http", "https"):
            raise HttpRefused(f"http_get: only http and https URLs are fetched, not {parsed.scheme or 'none'}: "
                              f"{url!r}")
        if parsed.userinfo:
            raise HttpRefused(f"http_get: URLs with a user name or password are refused: {url!r}")
        host = parsed.host.rstrip(".").lower()
        if not host:
            raise HttpRefused(f"http_get: the URL has no host: {url!r}")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return cls(parsed, host, port, _literal_address(host))

    def check_allowed(self, policy: Policy) -> None:
        if not any(_entry_allows(entry, self.host, self.port) for entry in policy.allow):
            hint = f"add it to {ALLOW_ENV}" if not policy.allow else f"allowed: {', '.join(policy.allow)}"
            raise HttpRefused(f"http_get: host {self.host}:{self.port} is not allowed ({hint})")


def _entry_allows(entry: str, host: str, port: int) -> bool:
    entry = entry.strip().lower()
    name, allowed_port = entry, None
    if entry.startswith("["):                       # [::1] or [::1]:8080
        name, _, rest = entry[1:].partition("]")
        allowed_port = rest[1:] if rest.startswith(":") else None
    elif entry.count(":") == 1:                     # host:8080 (an IPv6 entry without brackets has several)
        name, allowed_port = entry.split(":")
    name = name.rstrip(".")
    if allowed_port is None:
        port_ok = port in (80, 443)
    else:
        port_ok = allowed_port == "*" or allowed_port == str(port)
    if name.startswith("*."):
        return port_ok and host.endswith(name[1:])
    return port_ok and host == name


def _literal_address(host: str):
    """The IP address a host written as an address stands for, in any form inet_aton reads."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if all(ch in "0123456789abcdefx." for ch in host) and any(ch.isdigit() for ch in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _checked_address(target: _Target, policy: Policy, deadline: float) -> str:
    addresses = [target.literal] if target.literal is not None else _resolve(target, deadline)
    if not policy.allow_private:
        for address in addresses:
            if not _public(address):
                raise HttpRefused(f"http_get: {target.host} is {address}, which is not a public address "
                                  f"(private, loopback, link-local, multicast or reserved); refused before "
                                  f"connecting ({PRIVATE_ENV}=1 allows it)")
    return str(addresses[0])


def _resolve(target: _Target, deadline: float) -> list:
    remaining = deadline - time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        infos = pool.submit(_system_resolve, target.host, target.port, type=socket.SOCK_STREAM) \
            .result(timeout=max(remaining, 0.001))
    except concurrent.futures.TimeoutError:
        raise HttpRefused(f"http_get: looking up {target.host} took too long") from None
    except (OSError, UnicodeError) as error:
        raise HttpRefused(f"http_get: cannot resolve {target.host}: {error}") from None
    finally:
        pool.shutdown(wait=False)
    addresses = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HttpRefused(f"http_get: {target.host} has no address")
    return addresses


def _public(address) -> bool:
    if address.version == 6:
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not _public(embedded):
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_link_local
                                      or address.is_loopback or address.is_private or address.is_unspecified)


def _get(client, target: _Target, address: str, policy: Policy, deadline: float):
    """One request to the pinned address: the body's text, or a _Redirect."""
    import httpx

    pinned = target.url.copy_with(host=address)
    default_port = target.port == (443 if target.url.scheme == "https" else 80)
    host_header = (f"[{target.host}]" if ":" in target.host else target.host) + \
        ("" if default_port else f":{target.port}")
    extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
    remaining = max(deadline - time.monotonic(), 0.001)
    headers = {"Host": host_header, "Accept-Encoding": "gzip, deflate", "User-Agent": "fmflow-http_get"}
    try:
        with client.stream("GET", pinned, headers=headers, extensions=extensions,
                           timeout=httpx.Timeout(remaining)) as response:
            if response.status_code in REDIRECTS and response.headers.get("location"):
                return _Redirect(response.headers["location"])
            if response.status_code >= 400:
                raise HttpRefused(f"http_get: {target.url} answered HTTP {response.status_code}")
            body = _read_body(response, policy, deadline, str(target.url))
            return body.decode(response.charset_encoding or "utf-8", errors="replace")
    except httpx.TimeoutException:
        raise HttpRefused(f"http_get: {target.url} did not answer within {policy.timeout:g}s") from None
    except httpx.HTTPError as error:
        raise HttpRefused(f"http_get: fetching {target.url} failed: {type(error).__name__}: {error}") from None


def _read_body(response, policy: Policy, deadline: float, url: str) -> bytes:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        decoder = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)
    elif encoding in ("identity", ""):
        decoder = None
    else:
        raise HttpRefused(f"http_get: {url} sent its body as {encoding!r}, which is not read (gzip and deflate are)")
    body = bytearray()
    limit = policy.max_bytes

    def add(piece: bytes) -> None:
        body.extend(piece)
        if len(body) > limit:
            raise HttpRefused(f"http_get: the body of {url} is larger than {limit} bytes")

    for raw in response.iter_raw():
        if time.monotonic() > deadline:
            raise HttpRefused(f"http_get: {url} did not finish within {policy.timeout:g}s")
        if decoder is None:
            add(raw)
            continue
        try:
            add(decoder.decompress(raw, limit + 1 - len(body)))
            while decoder.unconsumed_tail:
                add(decoder.decompress(decoder.unconsumed_tail, limit + 1 - len(body)))
        except zlib.error as error:
            raise HttpRefused(f"http_get: the {encoding} body of {url} is damaged: {error}") from None
    return bytes(body)
