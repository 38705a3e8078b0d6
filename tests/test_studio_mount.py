"""The Studio's static serving: fixed file table, security headers, caching, no third parties.

These run without a browser: a bare FastAPI app with only the Studio mounted, plus checks on the
shipped files themselves (the page must never reference another origin or a CDN).
"""

from __future__ import annotations

import re
from importlib import resources
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from openlipsync.web.mount import ASSET_TYPES, mount_studio, security_headers

WEB_FILES = ["index.html", *ASSET_TYPES]


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    mount_studio(app, media_origins=["https://media.example.test/bucket/x"])
    return TestClient(app)


def test_page_and_assets_are_served_with_their_types(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="/studio/app.js"' in page.text and 'href="/studio/styles.css"' in page.text
    js = client.get("/studio/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    css = client.get("/studio/styles.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_security_headers_allow_only_own_and_media_origins(client: TestClient) -> None:
    headers = client.get("/").headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    # The configured origin (scheme://host only, no path) is allowed for media and fetches.
    assert "connect-src 'self' https://media.example.test;" in csp
    assert "/bucket" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_origins_default_to_the_api_settings() -> None:
    app = FastAPI()
    app.state.settings = SimpleNamespace(
        public_base_url="https://lipsync.example.test:8443/",
        storage_url="s3://bucket/prefix",
        s3_endpoint_url="https://s3.example.test",
    )
    mount_studio(app)
    csp = TestClient(app).get("/").headers["content-security-policy"]
    assert "https://lipsync.example.test:8443" in csp and "https://s3.example.test" in csp


@pytest.mark.parametrize("bad", ["", "javascript:alert(1)", "ftp://x", "not a url", "//host"])
def test_malformed_origins_are_ignored(bad: str) -> None:
    csp = security_headers([bad])["Content-Security-Policy"]
    assert "connect-src 'self';" in csp


def test_conditional_get_and_head(client: TestClient) -> None:
    first = client.get("/studio/app.js")
    etag = first.headers["etag"]
    again = client.get("/studio/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    stale = client.get("/studio/app.js", headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200
    head = client.head("/")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(client.get("/").content)


@pytest.mark.parametrize(
    "path",
    [
        "/studio/",
        "/studio/index.html",
        "/studio/mount.py",
        "/studio/../mount.py",
        "/studio/%2e%2e/mount.py",
        "/studio/app.js/../../mount.py",
        "/studio/__init__.py",
        "/index.html",
    ],
)
def test_only_the_shipped_assets_are_reachable(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (404, 405)
    assert b"import" not in response.content


def test_writes_are_refused(client: TestClient) -> None:
    assert client.post("/", content=b"x").status_code == 405
    assert client.put("/studio/app.js", content=b"x").status_code == 405


@pytest.mark.parametrize("name", WEB_FILES)
def test_files_ship_as_package_data_and_reference_no_other_origin(name: str) -> None:
    text = resources.files("openlipsync.web").joinpath(name).read_text(encoding="utf-8")
    # No CDN, web font, analytics or any absolute URL; the only allowed one is the SVG namespace.
    urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", text))
    assert urls <= {"http://www.w3.org", "//www.w3.org"}, urls
    assert "@import" not in text and "@font-face" not in text


def test_page_never_inserts_server_text_as_html() -> None:
    js = resources.files("openlipsync.web").joinpath("app.js").read_text(encoding="utf-8")
    assert "innerHTML" not in js and "outerHTML" not in js and "insertAdjacentHTML" not in js
    assert "document.write" not in js and "eval(" not in js
