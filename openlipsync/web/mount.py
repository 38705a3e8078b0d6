"""Serve the Studio page at `/` and its two assets at `/studio/…` from the package's own files.

Only files shipped in this package are served, looked up in a fixed table (no path from the URL
ever reaches the file system). Every response carries a Content-Security-Policy that lets the page
talk to its own origin and to the origins the server hands out URLs for (public base URL, S3
endpoint) and nothing else: the Studio makes no third-party request, by construction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response

PAGE = "index.html"
ASSET_TYPES: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "styles.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


def mount_studio(app: FastAPI, *, media_origins: Sequence[str] | None = None) -> None:
    """Add `GET /` (the page) and `GET /studio/{app.js,styles.css}` to the app.

    `media_origins` are extra origins the page may fetch from or play media from; by default they
    are read from `app.state.settings` (public base URL and S3 endpoint), when present.
    """
    origins = list(media_origins) if media_origins is not None else _origins_from_settings(app)
    headers = security_headers(origins)
    page = _load(PAGE, "text/html; charset=utf-8")
    assets = {name: _load(name, media_type) for name, media_type in ASSET_TYPES.items()}

    async def studio_page(request: Request) -> Response:
        return _serve(request, page, headers)

    async def studio_asset(request: Request) -> Response:
        return _serve(request, assets[request.url.path.rsplit("/", 1)[-1]], headers)

    app.add_api_route("/", studio_page, methods=["GET", "HEAD"], include_in_schema=False)
    for name in assets:
        app.add_api_route(
            f"/studio/{name}", studio_asset, methods=["GET", "HEAD"], include_in_schema=False
        )


def security_headers(origins: Iterable[str]) -> dict[str, str]:
    """CSP and friends: the page may reach only itself and the server's own media origins."""
    extra = " ".join(sorted({o for o in (_origin(u) for u in origins) if o}))
    media = f"'self' blob: {extra}".strip()
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {media} data:",
            f"media-src {media}",
            f"connect-src 'self' {extra}".strip(),
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        # Revalidate every load: an upgraded server must never run with a stale app.js.
        "Cache-Control": "no-cache",
    }


def _serve(request: Request, file: StaticFile, headers: dict[str, str]) -> Response:
    common = {**headers, "ETag": file.etag}
    if request.headers.get("if-none-match") == file.etag:
        return Response(status_code=304, headers=common)
    body = b"" if request.method == "HEAD" else file.body
    response = Response(body, media_type=file.media_type, headers=common)
    if request.method == "HEAD":
        response.headers["Content-Length"] = str(len(file.body))
    return response


def _load(name: str, media_type: str) -> StaticFile:
    body = resources.files(__package__).joinpath(name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return StaticFile(body=body, media_type=media_type, etag=etag)


def _origins_from_settings(app: FastAPI) -> list[str]:
    settings = getattr(app.state, "settings", None)
    if settings is None:
        return []
    urls = [getattr(settings, "public_base_url", "")]
    if str(getattr(settings, "storage_url", "")).startswith("s3://"):
        urls.append(getattr(settings, "s3_endpoint_url", ""))
    return [u for u in urls if u]


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}"
