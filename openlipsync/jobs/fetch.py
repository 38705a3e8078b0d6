"""Download user-supplied URLs without letting them reach inside our network (SSRF).

A URL is only fetched after its host resolves to public addresses, and the connection is made to
the address that was checked (the `Host` header and TLS SNI keep the name), so a DNS answer that
changes between check and connect cannot smuggle in 127.0.0.1. Redirects are followed by hand so
every hop is checked. Every download is bounded in time and size and must look like media.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from openlipsync.settings import Settings

MAX_REDIRECTS = 5
USER_AGENT = "openlipsync-fetch/1"
_REDIRECTS = {301, 302, 303, 307, 308}
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml")
# Leading bytes of the media containers we accept; anything else must at least not be text.
_MAGIC = (
    b"RIFF",
    b"ID3",
    b"fLaC",
    b"OggS",
    b"\x1aE\xdf\xa3",
    b"\x00\x00\x01\xba",
    b"\x00\x00\x01\xb3",
)
_MAGIC += (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"FORM", b"caff", b"#!AMR", b"0&\xb2u")

_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="dns")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], bool]
"""Decides whether an address may be contacted; the default allows public addresses only."""


class FetchError(Exception):
    """Why a URL could not be turned into a local file; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Fetched:
    path: Path
    size: int
    content_type: str
    final_url: str


def is_public_address(ip: IPAddress) -> bool:
    """False for loopback, private, link-local (cloud metadata), multicast, reserved, CGNAT..."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public_address(embedded):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def allow_any(ip: IPAddress) -> bool:
    return True


def policy_for(allow_private: bool) -> AddressPolicy:
    return allow_any if allow_private else is_public_address


def resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """All addresses of `host`; getaddrinfo has no timeout of its own, so bound it here."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    future = _resolver.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError as exc:
        raise FetchError("timeout", f"DNS lookup of {host} timed out") from exc
    except OSError as exc:
        raise FetchError("network", f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError("network", f"{host} has no addresses")
    return addresses


def checked_address(url: httpx.URL, policy: AddressPolicy, timeout: float) -> IPAddress:
    """The address to connect to for `url`, refusing it if any address of the host is internal."""
    if url.scheme not in ("http", "https"):
        raise FetchError("invalid_url", f"only http and https URLs can be fetched, not {url}")
    if not url.host:
        raise FetchError("invalid_url", f"the URL has no host: {url}")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = resolve(url.host, port, timeout)
    for address in addresses:
        if not policy(address):
            raise FetchError(
                "blocked", f"{url.host} resolves to the non-public address {address}; refused"
            )
    return addresses[0]


def pinned_request(
    client: httpx.Client,
    method: str,
    url: httpx.URL,
    address: IPAddress,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Request:
    """A request to `address` that still presents `url`'s host name (Host header, SNI, cert)."""
    all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    host_header = url.host if url.port is None else f"{url.host}:{url.port}"
    if ":" in url.host and not url.host.startswith("["):
        host_header = f"[{url.host}]" + (f":{url.port}" if url.port else "")
    all_headers["Host"] = host_header
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return client.build_request(
        method,
        url.copy_with(host=str(address)),
        headers=all_headers,
        content=content,
        extensions=extensions,
    )


def timeouts(total: float) -> httpx.Timeout:
    step = min(10.0, total)
    return httpx.Timeout(connect=step, read=step, write=step, pool=step)


@contextmanager
def open_url(
    url: str, *, policy: AddressPolicy, deadline: float, client: httpx.Client
) -> Iterator[httpx.Response]:
    """A streaming GET of `url` after following and checking up to MAX_REDIRECTS redirects."""
    current = _parse(url)
    for _ in range(MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timeout", f"fetching {url} took too long")
        address = checked_address(current, policy, remaining)
        request = pinned_request(client, "GET", current, address)
        try:
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", f"{current.host} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise FetchError("network", f"cannot connect to {current.host}: {exc}") from exc
        if response.status_code in _REDIRECTS and "location" in response.headers:
            response.close()
            current = _parse(str(current.join(response.headers["location"])))
            continue
        try:
            if response.status_code >= 400:
                raise FetchError(
                    "http_status", f"{url} answered HTTP {response.status_code}, not the file"
                )
            yield response
        finally:
            response.close()
        return
    raise FetchError("too_many_redirects", f"{url} redirected more than {MAX_REDIRECTS} times")


def fetch_to_file(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_seconds: float,
    policy: AddressPolicy = is_public_address,
) -> Fetched:
    """Download `url` into `dest`, enforcing the SSRF policy, deadline, size and type."""
    deadline = time.monotonic() + timeout_seconds
    with (
        httpx.Client(timeout=timeouts(timeout_seconds), trust_env=False) as client,
        open_url(url, policy=policy, deadline=deadline, client=client) as response,
    ):
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in ("text/html", "application/xhtml+xml"):
            raise FetchError("html_page", f"{url} is a web page, not a media file")
        if content_type.startswith(_TEXT_TYPES):
            raise FetchError("not_media", f"{url} is a {content_type} document, not media")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchError("too_large", f"{url} is {declared} bytes; the limit is {max_bytes}")
        size = _stream_to_file(response, dest, url, max_bytes, deadline)
        return Fetched(dest, size, content_type, str(response.url))


def fetch_within_limits(url: str, dest: Path, settings: Settings) -> Fetched:
    """`fetch_to_file` under this deployment's size and time limits and address policy:
    what a generation's input URL and a registered asset's URL both get."""
    return fetch_to_file(
        url,
        dest,
        max_bytes=settings.fetch_max_bytes,
        timeout_seconds=settings.fetch_timeout_seconds,
        policy=policy_for(settings.allow_private_urls),
    )


def _stream_to_file(
    response: httpx.Response, dest: Path, url: str, max_bytes: int, deadline: float
) -> int:
    size, head = 0, b""
    try:
        with dest.open("wb") as out:
            for chunk in response.iter_bytes():
                if len(head) < 512:
                    head += chunk[:512]
                    if len(head) >= 512:
                        _require_media(head, url)
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError("too_large", f"{url} is larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError("timeout", f"downloading {url} took too long")
                out.write(chunk)
            if 0 < len(head) < 512:
                _require_media(head, url)
    except httpx.TimeoutException as exc:
        dest.unlink(missing_ok=True)
        raise FetchError("timeout", f"{url} stopped sending data") from exc
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise FetchError("network", f"downloading {url} failed: {exc}") from exc
    except FetchError:
        dest.unlink(missing_ok=True)
        raise
    if size == 0:
        raise FetchError("not_media", f"{url} returned an empty body")
    return size


def _require_media(head: bytes, url: str) -> None:
    """Reject web pages and other text early (a login page saved as 'video.mp4' is common)."""
    if head.startswith(_MAGIC) or head[4:8] == b"ftyp" or head[:2] in (b"\xff\xfb", b"\xff\xf3"):
        return
    sample = head[:1024]
    if b"\x00" in sample:
        return
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return  # binary data of a container we do not know; the decoder decides
    if "<html" in text.lower() or "<!doctype" in text.lower():
        raise FetchError("html_page", f"{url} returned a web page, not a media file")
    raise FetchError("not_media", f"{url} returned text, not a media file")


def _parse(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError("invalid_url", f"not a valid URL: {url!r}") from exc
