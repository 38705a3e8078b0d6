"""The Studio page end to end: a real uvicorn server with the real API, driven by Chromium.

Debian's Chromium (scripts/install_chromium.sh) is driven through Playwright's Python client;
Playwright's own browser download is never used. Screenshots of every screen at desktop
(1280x800) and phone (390x844) widths are written to OPENLIPSYNC_STUDIO_ARTIFACTS or a temporary
folder whose path the tests print. When a job worker exists (openlipsync.jobs.runner), the flow
is followed to COMPLETED and the result is played; otherwise the test stops at PENDING.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import media_path
from tests.media_helpers import camera_y4m

BROWSER = shutil.which("chromium") or "/usr/bin/chromium"
# launched through a wrapper that takes away real-time scheduling (see the script)
CHROMIUM = str(Path(__file__).resolve().parents[1] / "scripts" / "chromium_without_realtime.sh")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# OPENLIPSYNC_STUDIO_NO_WORKER=1 checks the page alone (jobs stay PENDING) while the engine is down.
HAS_WORKER = importlib.util.find_spec("openlipsync.jobs.runner") is not None and not os.environ.get(
    "OPENLIPSYNC_STUDIO_NO_WORKER"
)
COMPLETION_TIMEOUT_MS = 150_000

if importlib.util.find_spec("playwright") is None:
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)
if not Path(BROWSER).exists():
    pytest.skip(
        "Chromium not found: run scripts/install_chromium.sh (Debian package 'chromium')",
        allow_module_level=True,
    )
if importlib.util.find_spec("openlipsync.api.app") is None:
    pytest.skip("openlipsync.api.app is not available yet", allow_module_level=True)

from playwright.sync_api import (  # noqa: E402
    Browser,
    Locator,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

# Two cores shared with media work: give every assertion room before calling it a failure.
expect.set_options(timeout=20_000)

SERVER_CODE = """
import sys, uvicorn
from openlipsync.api.app import create_app
from openlipsync.settings import Settings
app = create_app(Settings())  # the Studio is part of every app
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@dataclass
class Studio:
    url: str
    key: str
    data_dir: Path
    artifacts: Path
    worker: bool
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server did not become healthy: {log.read_text()[-2000:]}")


def _artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("OPENLIPSYNC_STUDIO_ARTIFACTS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("studio-shots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nStudio screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    from openlipsync.settings import Settings
    from openlipsync.store.db import dispose_all, open_database
    from openlipsync.store.keys import create_key

    data_dir = tmp_path_factory.mktemp("studio-data")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "OPENLIPSYNC_DATA_DIR": str(data_dir),
        "OPENLIPSYNC_PUBLIC_BASE_URL": url,
    }
    settings = Settings(data_dir=data_dir, public_base_url=url)
    with open_database(settings)() as session:
        key, _ = create_key(session, "studio-e2e")
    dispose_all()
    studio = Studio(url, key, data_dir, _artifacts_dir(tmp_path_factory), HAS_WORKER)
    log = data_dir / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, str(port)],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    studio.processes.append(server)
    try:
        _wait_healthy(url, server, log)
        if HAS_WORKER:
            with (data_dir / "worker.log").open("wb") as out:
                studio.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "openlipsync.cli", "worker"],
                        env=env,
                        stdout=out,
                        stderr=out,
                        start_new_session=True,
                    )
                )
        yield studio
    finally:
        _stop(studio.processes)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop each started process with its whole group (the worker spawns Celery children)."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=25)  # the worker's warm shutdown may finish a running job
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:  # one per process: a second inside it is refused
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Watch:
    """Every request and console error of a page: the Studio must stay on its own server."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.console_errors: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on(
            "console",
            lambda message: message.type == "error" and self.console_errors.append(message.text),
        )

    def foreign(self) -> list[str]:
        return [
            url
            for url in self.urls
            if urlsplit(url).scheme not in ("blob", "data")
            and urlsplit(url).hostname not in ("127.0.0.1", "localhost")
        ]


def _new_page(browser: Browser, viewport: dict[str, int]) -> tuple[Page, Watch]:
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page, Watch(page)


def _sign_in(page: Page, studio: Studio) -> None:
    page.goto(studio.url + "/")
    page.get_by_label("API key").fill(studio.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Sections")).to_be_visible()


def _shot(page: Page, studio: Studio, name: str, full_page: bool = True) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # a sticky header would land mid-picture
    page.wait_for_timeout(300)  # let transitions settle
    page.screenshot(path=str(studio.artifacts / f"{name}.png"), full_page=full_page)


def _frames(text: str | None) -> int:
    match = re.search(r"([\d,]+) frames", text or "")
    assert match, text
    return int(match.group(1).replace(",", ""))


def test_sign_in_refuses_a_wrong_key_in_words(browser: Browser, studio: Studio) -> None:
    page, watch = _new_page(browser, DESKTOP)
    page.goto(studio.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    _shot(page, studio, "desktop-01-sign-in")
    page.get_by_label("API key").fill("sk-ols-not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator("#signin-error")
    expect(alert).to_contain_text("key was not accepted")
    expect(alert).to_contain_text("Error code: unauthorized")
    assert page.evaluate("sessionStorage.length") == 0
    page.get_by_label("API key").fill(studio.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Create")).to_have_attribute("aria-current", "page")
    assert page.evaluate("sessionStorage.getItem('openlipsync.apiKey')") == studio.key
    page.reload()  # the key survives a reload of the tab, not a new tab
    expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert watch.foreign() == []
    page.context.close()


@pytest.mark.slow
def test_upload_estimate_submit_and_watch_progress(browser: Browser, studio: Studio) -> None:
    video = media_path("video/grid_bbaf2n.mpg")
    audio = media_path("speech/librivox_austen_0870.wav")
    page, watch = _new_page(browser, DESKTOP)
    _sign_in(page, studio)
    page.locator("#visual-file").set_input_files(str(video))
    page.locator("#audio-file").set_input_files(str(audio))
    expect(page.get_by_test_id("visual-status")).to_have_text("In your library", timeout=30_000)
    expect(page.get_by_test_id("audio-status")).to_have_text("In your library", timeout=30_000)
    cost = page.locator("#estimate-cost")
    expect(cost).to_have_text(re.compile(r"^\$\d+\.\d{2,4}$"), timeout=30_000)
    detail = page.locator("#estimate-detail")
    expect(detail).to_contain_text(re.compile(r"\d+ frames"))
    loop_frames = _frames(detail.text_content())
    # Changing the sync mode re-prices the job: cut_off stops at the 3 s video (~75 frames),
    # loop runs to the end of the longer speech.
    page.get_by_label("When lengths differ").select_option("cut_off")
    expect(detail).not_to_contain_text(f"{loop_frames} frames", timeout=15_000)
    expect(detail).to_contain_text(re.compile(r"\d+ frames"))
    assert 70 <= _frames(detail.text_content()) <= 76 < loop_frames
    page.get_by_label("Output file name").fill("studio-e2e")
    _shot(page, studio, "desktop-02-create-ready")

    page.get_by_role("button", name="Start lip-sync").click()
    job = page.locator(".job").first
    expect(job).to_be_visible()
    expect(job.get_by_test_id("job-status")).to_contain_text(
        re.compile("Queued|Processing|Completed")
    )
    generation_id = job.get_attribute("data-id")
    assert generation_id
    _shot(page, studio, "desktop-03-job-started")

    if studio.worker:
        expect(job.get_by_test_id("job-status")).to_contain_text(
            re.compile("Completed|Failed|Rejected"), timeout=COMPLETION_TIMEOUT_MS
        )
        _shot(page, studio, "desktop-04-job-finished")
        assert "Completed" in (job.text_content() or ""), job.text_content()
        job.get_by_role("button", name="View result").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_be_visible()
        result = page.locator("#result-video")
        result.evaluate("v => v.play()")
        page.wait_for_function(
            "() => document.getElementById('result-video').currentTime > 0.5", timeout=20_000
        )
        assert result.evaluate("v => v.error") is None
        assert result.evaluate("v => v.videoWidth") > 0
        href = page.get_by_role("link", name="Download MP4").get_attribute("href")
        assert href and httpx.get(href, timeout=10).content[4:8] == b"ftyp"
        _shot(page, studio, "desktop-05-result", full_page=False)  # the modal covers the view
        page.get_by_role("button", name="Close").click()

    page.get_by_role("link", name="History").click()
    row = page.locator(f'.history-row[data-id="{generation_id}"]')
    expect(row).to_be_visible()
    expected = "Completed" if studio.worker else re.compile("Queued|Processing")
    expect(row.locator(".badge")).to_have_text(expected)
    # The status filter asks the server: a filter excluding this job hides it.
    page.get_by_label("Failed", exact=True).check()
    expect(row).to_be_hidden()
    page.get_by_label("Failed", exact=True).uncheck()
    expect(row).to_be_visible()
    page.get_by_label("Search generations").fill("no-such-thing")
    expect(row).to_be_hidden()
    page.get_by_label("Search generations").fill("studio-e2e")
    expect(row).to_be_visible()
    _shot(page, studio, "desktop-06-history")

    page.get_by_role("link", name="Assets").click()
    expect(page.locator(".asset-card")).to_have_count(2, timeout=10_000)
    expect(page.locator("#asset-count")).to_have_text("2 files")
    page.get_by_label("Type", exact=True).select_option("AUDIO")
    expect(page.locator(".asset-card")).to_have_count(1)
    expect(page.locator(".asset-card .asset-name")).to_have_text(audio.name)
    _shot(page, studio, "desktop-07-assets")
    assert watch.foreign() == [], watch.foreign()
    page.context.close()


def test_a_text_file_named_mp4_gets_a_friendly_error(
    browser: Browser, studio: Studio, tmp_path: Path
) -> None:
    fake = tmp_path / "holiday.mp4"
    fake.write_text("This is a shopping list, not a video.\n" * 20)
    page, _ = _new_page(browser, DESKTOP)
    _sign_in(page, studio)
    page.locator("#visual-file").set_input_files(str(fake))
    page.locator("#audio-file").set_input_files(str(media_path("speech/librivox_austen_0870.wav")))
    error = page.locator(".error-box").first
    status = page.get_by_test_id("visual-status")
    expect(status).to_have_text(re.compile("Not usable|In your library"), timeout=30_000)
    if status.text_content() != "Not usable":
        # Accepted as an asset: the server must refuse it at pricing or submission time.
        page.wait_for_function("() => !document.getElementById('submit').disabled")
        page.get_by_role("button", name="Start lip-sync").click()
    expect(error).to_be_visible(timeout=30_000)
    expect(error).to_contain_text("could not be read")
    expect(error).to_contain_text("different kind of file than its name says")
    expect(error.locator(".error-code")).to_have_text(re.compile(r"^Error code: [a-z_]+$"))
    assert page.get_by_role("button", name="Start lip-sync").is_disabled() or (
        page.locator(".job").count() == 0
    )
    _shot(page, studio, "desktop-08-bad-file")
    page.context.close()


def test_phone_layout_fits_and_keyboard_reaches_everything(
    browser: Browser, studio: Studio
) -> None:
    page, watch = _new_page(browser, PHONE)
    page.goto(studio.url + "/")
    _shot(page, studio, "phone-01-sign-in")
    # Keyboard only: the key field has focus on arrival; Enter signs in.
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.keyboard.type(studio.key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
    # From the top of the page, Tab reaches the skip link first, then the sections.
    page.reload()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Create"
    for view, name in (("create", "02-create"), ("history", "03-history"), ("assets", "04-assets")):
        page.goto(f"{studio.url}/#{view}")
        page.wait_for_timeout(400)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{view} scrolls sideways ({width}px)"
        _shot(page, studio, f"phone-{name}")
    page.goto(f"{studio.url}/#history")
    view = page.get_by_role("button", name="View").first
    if studio.worker and view.is_visible():  # a result from the upload test, on a phone
        view.click()
        expect(page.get_by_role("dialog")).to_be_visible()
        page.wait_for_timeout(800)
        _shot(page, studio, "phone-05-result", full_page=False)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.get_by_role("button", name="Close").click()
    page.get_by_role("tab", name="Batches").click()
    expect(page.get_by_role("tab", name="Batches")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_text("No batches yet.")).to_be_visible()
    expect(page.locator("#batch-error")).to_be_empty()
    # Every visible form control has a name a screen reader can read out.
    page.goto(f"{studio.url}/#create")
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(el => el.offsetParent !== null || el.type === 'file')
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
            .map(el => el.id || el.outerHTML.slice(0, 60))"""
    )
    assert unnamed == []
    # Focus is visible: a focused control draws an outline.
    page.locator("#model").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    assert watch.foreign() == []
    page.context.close()


def _point(text: str | None) -> tuple[int, int]:
    match = re.search(r"point \((\d+), (\d+)\)", text or "")
    assert match, text
    return int(match.group(1)), int(match.group(2))


def _api_get(studio: Studio, path: str) -> httpx.Response:
    return httpx.get(studio.url + path, headers={"x-api-key": studio.key}, timeout=10)


@pytest.mark.slow
def test_clicking_a_face_sends_frame_and_coordinates(browser: Browser, studio: Studio) -> None:
    video = media_path("video/pyfeat_single_face.mp4")  # H.264, 640x360, 30 fps: plays here
    page, _ = _new_page(browser, DESKTOP)
    _sign_in(page, studio)
    page.locator("#visual-file").set_input_files(str(video))
    page.locator("#audio-file").set_input_files(str(media_path("speech/arctic_a0009.wav")))
    page.get_by_text("Choose a face", exact=True).click()
    stage = page.locator("#frame-stage")
    expect(stage).to_have_attribute("data-fps", "30", timeout=15_000)  # measured in the browser
    page.get_by_role("button", name="Next frame").click()
    page.get_by_role("button", name="Next frame").click()
    expect(page.locator("#frame-readout")).to_have_text("frame 2")
    box = page.locator("#frame-video").bounding_box()
    assert box and box["width"] > 100
    # Click at 50 % / 40 % of the picture: about (320, 144) in the 640x360 video's pixels.
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.4)
    status = page.locator("#speaker-status")
    expect(status).to_have_text(re.compile(r"^Speaker set: frame 2, point \(\d+, \d+\)\.$"))
    x, y = _point(status.text_content())
    assert abs(x - 320) <= 2 and abs(y - 144) <= 2, (x, y)
    expect(page.locator("#frame-marker")).to_be_visible()
    # Keyboard: each arrow press moves the marker by 2 % of the width (13 px here).
    stage.focus()
    page.keyboard.press("ArrowRight")
    expect(status).not_to_have_text(f"Speaker set: frame 2, point ({x}, {y}).")
    x2, y2 = _point(status.text_content())
    assert abs(x2 - x - 13) <= 1 and y2 == y, (x2, y2)
    _shot(page, studio, "desktop-09-speaker-picker")
    expect(page.get_by_test_id("visual-status")).to_have_text("In your library", timeout=30_000)
    expect(page.get_by_test_id("audio-status")).to_have_text("In your library", timeout=30_000)
    page.get_by_label("Model", exact=True).select_option("lipsync-1.9.0-beta")  # fastest preset
    page.get_by_label("When lengths differ").select_option("cut_off")
    expect(page.get_by_label("Expressiveness")).to_be_hidden()  # lipsync-2 family only
    page.get_by_role("button", name="Start lip-sync").click()
    job = page.locator(".job").first
    expect(job).to_be_visible()
    generation = _api_get(studio, f"/v2/generate/{job.get_attribute('data-id')}").json()
    assert generation["model"] == "lipsync-1.9.0-beta"
    assert generation["options"]["sync_mode"] == "cut_off"
    assert generation["options"]["active_speaker_detection"] == {
        "frame_number": 2,
        "coordinates": [x2, y2],
    }
    if studio.worker:
        _result_plays_in_step_with_the_original(page, job, studio)
    page.context.close()


def _result_plays_in_step_with_the_original(page: Page, job: Locator, studio: Studio) -> None:
    """The H.264 original plays here, so the two players must move together."""
    expect(job.get_by_test_id("job-status")).to_contain_text(
        re.compile("Completed|Failed|Rejected"), timeout=COMPLETION_TIMEOUT_MS
    )
    assert "Completed" in (job.text_content() or ""), job.text_content()
    job.get_by_role("button", name="View result").click()
    original = page.locator("#original-slot video")
    expect(original).to_be_attached()
    page.wait_for_function(
        "() => document.querySelector('#original-slot video').readyState >= 1", timeout=10_000
    )
    result = page.locator("#result-video")
    result.evaluate("v => v.play()")
    page.wait_for_function(
        "() => document.getElementById('result-video').currentTime > 0.8", timeout=20_000
    )
    gap = page.evaluate(
        """() => Math.abs(document.getElementById('result-video').currentTime
                 - document.querySelector('#original-slot video').currentTime)"""
    )
    assert gap < 0.3, gap
    assert original.evaluate("v => !v.paused && v.muted")
    result.evaluate("v => v.pause()")
    page.wait_for_function("() => document.querySelector('#original-slot video').paused")
    result.evaluate("v => { v.currentTime = 0.5; }")
    page.wait_for_function(
        "() => Math.abs(document.querySelector('#original-slot video').currentTime - 0.5) < 0.1"
    )
    _shot(page, studio, "desktop-11-result-side-by-side", full_page=False)
    page.get_by_label("Hear the original sound instead").check()
    assert original.evaluate("v => !v.muted") and result.evaluate("v => v.muted")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()


def test_a_photo_switches_to_sync3_and_options_follow_the_model(
    browser: Browser, studio: Studio
) -> None:
    page, _ = _new_page(browser, DESKTOP)
    _sign_in(page, studio)
    model = page.get_by_label("Model", exact=True)
    model.select_option("react-1")
    expect(page.get_by_label("Emotion")).to_be_visible()
    expect(page.get_by_text("Who is speaking?")).to_be_hidden()
    expect(page.get_by_label("Expressiveness")).to_be_hidden()
    page.locator("#visual-file").set_input_files(str(media_path("photo/obama.jpg")))
    expect(model).to_have_value("sync-3")
    expect(page.locator("#model option[value='lipsync-2']")).to_be_disabled()
    expect(page.get_by_label("When lengths differ")).to_be_hidden()  # no duration in a photo
    expect(page.get_by_test_id("visual-status")).to_have_text("In your library", timeout=30_000)
    page.get_by_text("Type a script", exact=True).click()
    script = page.get_by_label("Script", exact=True)
    expect(script).to_be_visible()
    voices = _api_get(studio, "/v2/voices")
    if voices.status_code == 200:
        expect(page.get_by_label("Voice", exact=True)).to_be_visible()
    else:  # no voice catalogue on this server: a free voice id field and an explanation
        expect(page.locator("#voice-help")).to_contain_text("lists no voices")
        expect(page.get_by_label("Voice id")).to_be_visible()
        page.get_by_label("Voice id").fill("local-default")
    script.fill("Hello there, this is a test of the studio.")
    # Priced like any job, or a clear reason why not (e.g. no local voice engine installed).
    expect(page.locator("#estimate-detail")).to_have_text(
        re.compile(r"^(\d[\d,]* frames · sync-3|No estimate: .+)$"), timeout=30_000
    )
    _shot(page, studio, "desktop-10-photo-script")
    page.emulate_media(color_scheme="dark")  # the page follows the system's dark mode
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 17, 21)"
    _shot(page, studio, "desktop-12-dark")
    page.context.close()


def test_a_phone_photo_without_a_mime_type_is_a_photo(
    browser: Browser, studio: Studio, tmp_path: Path
) -> None:
    """Browsers that cannot read HEIC give the file no image type: the extension tells, and
    the preview is an icon instead of a broken image."""
    from tests.media_helpers import heic_photo

    photo = heic_photo(media_path("photo/obama.jpg"), tmp_path / "IMG_0001.HEIC", tile=512)
    page, _ = _new_page(browser, DESKTOP)
    _sign_in(page, studio)
    page.locator("#visual-file").set_input_files(
        {"name": photo.name, "mimeType": "application/octet-stream", "buffer": photo.read_bytes()}
    )
    expect(page.get_by_label("Model", exact=True)).to_have_value("sync-3")
    expect(page.get_by_test_id("visual-status")).to_have_text("In your library", timeout=30_000)
    expect(page.locator("#visual-picked .asset-icon")).to_be_visible()
    page.context.close()


def test_without_asset_uploads_the_files_go_with_the_job(browser: Browser, studio: Studio) -> None:
    """An older server without POST /v2/assets/upload: one multipart POST /v2/generate."""
    page, _ = _new_page(browser, DESKTOP)
    missing = {"statusCode": 404, "message": "Route not found", "errorCode": "not_found"}
    page.route("**/v2/assets/upload", lambda route: route.fulfill(status=404, json=missing))
    sent: list[str] = []
    page.on(
        "request",
        lambda r: (
            r.method == "POST"
            and "/v2/generate" in r.url
            and sent.append(r.headers.get("content-type", ""))
        ),
    )
    _sign_in(page, studio)
    page.locator("#visual-file").set_input_files(str(media_path("video/grid_lbax4n.mpg")))
    page.locator("#audio-file").set_input_files(str(media_path("speech/arctic_a0009.wav")))
    expect(page.get_by_test_id("visual-status")).to_have_text("Will upload on start")
    expect(page.get_by_test_id("audio-status")).to_have_text("Will upload on start")
    expect(page.locator("#estimate-detail")).to_have_text(
        "This server prices a job only after its files are uploaded."
    )
    page.get_by_label("When lengths differ").select_option("cut_off")
    page.get_by_role("button", name="Start lip-sync").click()
    job = page.locator(".job").first
    expect(job).to_be_visible()
    assert len(sent) == 1 and sent[0].startswith("multipart/form-data"), sent
    generation = _api_get(studio, f"/v2/generate/{job.get_attribute('data-id')}").json()
    assert generation["options"]["sync_mode"] == "cut_off"
    assert {item["type"] for item in generation["input"]} == {"video", "audio"}
    page.context.close()


def test_a_gif_is_a_video_when_it_moves_and_a_photo_when_it_does_not(
    browser: Browser, studio: Studio, tmp_path: Path
) -> None:
    """The server takes a moving GIF as a video (a photo in the image slot was refused as
    'VIDEO, not IMAGE'); Studio counts its frames, and shows either as an image."""
    from PIL import Image

    photo = Image.open(media_path("photo/astronaut.png")).convert("RGB")
    turns = [photo.rotate(angle) for angle in (0, 3, 6)]
    moving, still = tmp_path / "wave.gif", tmp_path / "still.gif"
    turns[0].save(moving, save_all=True, append_images=turns[1:], duration=100, loop=0)
    turns[0].save(still)
    page, _ = _new_page(browser, DESKTOP)
    _sign_in(page, studio)
    page.get_by_label("Model", exact=True).select_option("lipsync-2")
    page.locator("#visual-file").set_input_files(str(moving))
    expect(page.get_by_test_id("visual-status")).to_have_text("In your library", timeout=30_000)
    expect(page.get_by_label("Model", exact=True)).to_have_value("lipsync-2")  # a video
    expect(page.locator("#visual-picked img.thumb")).to_be_visible()
    expect(page.locator("#visual-picked")).to_contain_text("Video")
    page.locator("#visual-file").set_input_files(str(still))
    expect(page.get_by_test_id("visual-status")).to_have_text("In your library", timeout=30_000)
    expect(page.get_by_label("Model", exact=True)).to_have_value("sync-3")  # photos need it
    expect(page.locator("#visual-picked")).to_contain_text("Photo")
    page.context.close()


def _browser_with_devices(
    playwright: Playwright, grant: bool, camera: Path | None = None
) -> Browser:
    """Chromium whose microphone plays a real recording and whose camera, given `camera`
    (Y4M), shows it; both loop. `grant`: its permission prompts say yes (else no)."""
    speech = media_path("speech/librivox_austen_0870.wav")
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={speech}",
    ]
    if camera is not None:
        args.append(f"--use-file-for-fake-video-capture={camera}")
    if grant:
        args.append("--use-fake-ui-for-media-stream")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args)


def _record(page: Page, slot: str, button: str) -> str:
    """Record three seconds into `slot` with its button; the recording's file name."""
    page.get_by_role("button", name=button).click()
    stop = page.get_by_role("button", name="Stop recording")
    expect(stop).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("timer")).to_have_text("0:03", timeout=10_000)
    stop.click()
    expect(page.get_by_test_id(f"{slot}-status")).to_have_text("In your library", timeout=30_000)
    expect(page.locator(f"#{slot}-recorder")).to_be_hidden()
    return page.locator(f"#{slot}-picked .picked-name").inner_text()


@pytest.mark.slow
def test_a_video_and_a_voice_recorded_in_the_page_lip_sync(
    playwright: Playwright, studio: Studio, tmp_path: Path
) -> None:
    """Record yourself, record your voice, start: MediaRecorder's WebM files (no duration in
    their headers: the API reads it from the packets) go up as assets and lip-sync."""
    from openlipsync.media.audio import load_audio

    browser = _browser_with_devices(
        playwright, True, camera_y4m(media_path("video/grid_bbaf2n.mpg"), tmp_path / "camera.y4m")
    )
    try:
        page, watch = _new_page(browser, DESKTOP)
        _sign_in(page, studio)
        page.get_by_role("button", name="Record a video").click()
        expect(page.get_by_label("Camera")).to_be_visible()  # people see themselves
        expect(page.get_by_role("button", name="Record your voice")).to_be_disabled()
        page.wait_for_function(
            "() => document.getElementById('visual-record-live').currentTime > 0.5"
        )
        _shot(page, studio, "desktop-10-recording-video")
        page.get_by_role("button", name="Stop recording").click()
        page.get_by_role("button", name="Remove").first.click()  # and again, properly
        video_name = _record(page, "visual", "Record a video")
        audio_name = _record(page, "audio", "Record your voice")
        for name in (video_name, audio_name):
            assert re.fullmatch(r"recording-\d{8}-\d{6}\.webm", name), name
        if studio.worker:
            page.get_by_role("button", name="Start lip-sync").click()
            status = page.locator(".job").first.get_by_test_id("job-status")
            expect(status).to_contain_text(
                re.compile("Completed|Failed|Rejected"), timeout=COMPLETION_TIMEOUT_MS
            )
            expect(status).to_contain_text("Completed")
        assert watch.foreign() == [] and watch.console_errors == []
    finally:
        browser.close()
    headers = {"x-api-key": studio.key}
    assets = {
        a["name"]: a for a in httpx.get(f"{studio.url}/v2/assets", headers=headers).json()["items"]
    }
    video, audio = assets[video_name], assets[audio_name]
    assert (video["type"], audio["type"]) == ("VIDEO", "AUDIO")
    for asset in (video, audio):
        assert 2.5 < asset["durationSeconds"] < 6.0, asset
    recorded = tmp_path / "voice.webm"
    recorded.write_bytes(httpx.get(audio["url"], headers=headers).content)
    sound = load_audio(recorded).samples
    assert float((sound**2).mean() ** 0.5) > 0.01  # the speech, not silence


def test_a_refused_microphone_is_said_in_words(playwright: Playwright, studio: Studio) -> None:
    browser = _browser_with_devices(playwright, grant=False)
    try:
        page, _ = _new_page(browser, DESKTOP)
        _sign_in(page, studio)
        page.get_by_role("button", name="Record your voice").click()
        expect(page.locator("#create-error")).to_contain_text(
            "Access to the microphone was refused"
        )
        expect(page.get_by_role("button", name="Record your voice")).to_be_enabled()
        expect(page.get_by_role("timer")).to_be_hidden()
    finally:
        browser.close()


def test_a_machine_without_a_camera_is_said_in_words(
    playwright: Playwright, studio: Studio
) -> None:
    """No fake devices: Chromium on a server has no camera and no microphone."""
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream"]
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
    try:
        page, _ = _new_page(browser, DESKTOP)
        _sign_in(page, studio)
        page.get_by_role("button", name="Record a video").click()
        expect(page.locator("#create-error")).to_contain_text("No camera or microphone was found.")
        expect(page.get_by_label("Camera")).to_be_hidden()
    finally:
        browser.close()
