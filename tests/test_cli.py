"""The `openlipsync generate` command: real media in, a real MP4 out, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from tests.conftest import media_path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openlipsync.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_generate_writes_an_mp4_of_the_audio_length(tmp_path: Path, grid_video: Path) -> None:
    audio = media_path("speech/librivox_austen_0870.wav")
    out = tmp_path / "out.mp4"
    result = run_cli(
        "generate",
        "--video",
        str(grid_video),
        "--audio",
        str(audio),
        "-o",
        str(out),
        "--sync-mode",
        "loop",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # -q: MediaPipe's start-up chatter held back (native_logs)
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert (video.width, video.height) == (360, 288)
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(audio)) as container:
        seconds = container.duration / 1e6
    assert abs(frames - round(seconds * 25)) <= 1


@pytest.mark.parametrize(
    ("video", "audio", "code", "exit_code"),
    [
        ("missing.mp4", "speech/librivox_austen_0870.wav", "file_not_found", 2),
        ("text", "speech/librivox_austen_0870.wav", "generation_media_unreadable", 1),
        (
            "speech/librivox_austen_0870.wav",
            "speech/librivox_austen_0870.wav",
            "generation_video_missing",
            1,
        ),
        ("video/grid_bbaf2n.mpg", "photo/astronaut.png", "generation_audio_missing", 1),
        ("blank", "speech/librivox_austen_0870.wav", "generation_no_face_detected", 1),
    ],
)
def test_generate_fails_with_one_clear_line(
    tmp_path: Path, video: str, audio: str, code: str, exit_code: int
) -> None:
    if video == "text":
        video_path = tmp_path / "notes.mp4"
        video_path.write_text("this is not a video\n" * 50)
    elif video == "blank":
        import numpy as np
        from PIL import Image

        video_path = tmp_path / "blank.png"
        Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(video_path)
    elif video == "missing.mp4":
        video_path = tmp_path / video
    else:
        video_path = media_path(video)
    result = run_cli(
        "generate",
        "--video",
        str(video_path),
        "--audio",
        str(media_path(audio)),
        "-o",
        str(tmp_path / "o.mp4"),
        "-q",
    )
    assert result.returncode == exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}: "), result.stderr
    assert not (tmp_path / "o.mp4").exists() or video == "missing.mp4"


def test_temperature_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(
        "generate", "--video", "v", "--audio", "a", "-o", "o.mp4", "--temperature", "3"
    )
    assert result.returncode == 2
    assert "temperature" in result.stderr


@pytest.mark.slow
def test_generate_from_text_speaks_with_the_local_voice(tmp_path: Path, grid_video: Path) -> None:
    out = tmp_path / "text.mp4"
    result = run_cli(
        "generate",
        "--video",
        str(grid_video),
        "--text",
        "Good morning, everybody.",
        "-o",
        str(out),
        "-q",
    )
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        assert 0.8 < container.duration / 1e6 < 5.0


@pytest.mark.slow
def test_generate_with_a_transcript_uses_forced_alignment(tmp_path: Path, grid_video: Path) -> None:
    out = tmp_path / "aligned.mp4"
    result = run_cli(
        "generate",
        "--video",
        str(grid_video),
        "--audio",
        str(media_path("speech/arctic_a0009.wav")),
        "--transcript",
        "He turned sharply and faced Gregson across the table.",
        "-o",
        str(out),
        "-q",
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 10_000


def test_text_and_audio_together_are_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("generate", "--video", "v", "--audio", "a", "--text", "hi", "-o", "o.mp4")
    assert result.returncode == 2
    assert "not allowed with" in result.stderr


def test_unknown_voice_fails_with_its_code(tmp_path: Path, grid_video: Path) -> None:
    result = run_cli(
        "generate",
        "--video",
        str(grid_video),
        "--text",
        "hi",
        "--voice",
        "nobody",
        "-o",
        str(tmp_path / "o.mp4"),
        "-q",
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: voice_not_found: ")


def _generate_grid(output: Path) -> subprocess.CompletedProcess[str]:
    video, audio = media_path("video/grid_bbaf2n.mpg"), media_path("speech/arctic_a0009.wav")
    return run_cli(
        "generate", "--video", str(video), "--audio", str(audio), "-o", str(output), "-q"
    )


def test_an_output_path_through_a_file_is_a_usage_error_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    result = _generate_grid(tmp_path / "taken" / "out" / "o.mp4")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: output_unwritable: ")


@pytest.mark.parametrize("name", ["o.webm", "o.gif", "o.mkv"])
def test_an_output_named_for_another_format_is_a_usage_error(tmp_path: Path, name: str) -> None:
    """It was written as an MP4 under that name, which a browser will not play as WebM."""
    result = _generate_grid(tmp_path / name)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: output_format: the output is an MP4 (H.264 + AAC): name it .mp4, not {name}"
    ]
    assert not (tmp_path / name).exists()


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 2 MB tmpfs: a scratch disk that fills up (needs mount rights, as root in a container)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_scratch_disk_is_one_clear_line(tmp_path: Path, tiny_disk: Path) -> None:
    """The track, sounds and mouth library live in TMPDIR; no room there is an error line
    (their disk space is reserved up front: never a crash inside a mapped write)."""
    result = subprocess.run(
        [sys.executable, "-m", "openlipsync.cli", "generate", "-q"]
        + ["--video", str(media_path("video/grid_bbaf2n.mpg"))]
        + ["--audio", str(media_path("speech/librivox_austen_0870.wav"))]
        + ["-o", str(tmp_path / "o.mp4")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TMPDIR": str(tiny_disk)},
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: io_error: "), result.stderr
    assert "No space left on device" in result.stderr
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("speaker", ["abc", "1,2,3", "-5,3", "10,20@x", "10,20@-1"])
def test_a_malformed_speaker_is_a_usage_error(tmp_path: Path, speaker: str) -> None:
    # (--speaker=VALUE: a value that starts with "-" is not taken for an option)
    result = run_cli("generate", "--video", "v", "--audio", "a", "-o", "o", f"--speaker={speaker}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: invalid_option: --speaker")


@pytest.fixture(scope="module")
def two_people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bbaf2n (left) and lbax4n (right) side by side, 2 s, 720x288."""
    import numpy as np

    from openlipsync.media.video import VideoReader
    from tests.media_helpers import write_frames

    with (
        VideoReader(media_path("video/grid_bbaf2n.mpg")) as left,
        VideoReader(media_path("video/grid_lbax4n.mpg")) as right,
    ):
        frames = [np.hstack([a, b]) for a, b, _ in zip(left, right, range(50), strict=False)]
    return write_frames(tmp_path_factory.mktemp("cli") / "two.mp4", frames)


@pytest.mark.parametrize(("point", "changed"), [("180,150", "left"), ("540,150@10", "right")])
def test_speaker_picks_the_face_at_a_point(
    tmp_path: Path, two_people: Path, point: str, changed: str
) -> None:
    """--speaker X,Y[@FRAME] is the API's frame_number + coordinates: only that face's
    mouth moves to the new voice; the other face is left as it was filmed."""
    import numpy as np

    from openlipsync.media.video import VideoReader

    out = tmp_path / "out.mp4"
    audio = media_path("speech/librivox_austen_0870.wav")
    args = ["generate", "--video", str(two_people), "--audio", str(audio), "-o", str(out)]
    result = run_cli(*args, "--sync-mode", "cut_off", "--speaker", point, "-q")
    assert result.returncode == 0, result.stderr
    with VideoReader(two_people) as source, VideoReader(out) as output:
        pairs = list(zip(source, output, strict=True))
    mouths = {"left": np.s_[170:260, 110:250], "right": np.s_[170:260, 470:610]}
    moved = {
        side: max(float(np.percentile(np.abs(a[box].astype(int) - b[box]), 99)) for a, b in pairs)
        for side, box in mouths.items()
    }
    other = "left" if changed == "right" else "right"
    assert moved[changed] > 25 and moved[other] < 15, moved


def test_a_speaker_point_on_no_face_fails_with_its_code(tmp_path: Path, two_people: Path) -> None:
    audio = media_path("speech/librivox_austen_0870.wav")
    result = run_cli(
        "generate",
        "--video",
        str(two_people),
        "--audio",
        str(audio),
        "-o",
        str(tmp_path / "o.mp4"),
        "--speaker",
        "5,5",
        "-q",
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: generation_invalid_speaker_selection: ")
    )


def test_speaker_and_occlusion_flags_are_the_api_options() -> None:
    from openlipsync.cli import _engine_options

    assert _engine_options(None, False) == {}
    assert _engine_options(" Auto ", True) == {
        "occlusion_detection_enabled": True,
        "active_speaker_detection": {"auto_detect": True},
    }
    assert _engine_options("640,360@120", False) == {
        "active_speaker_detection": {"frame_number": 120, "coordinates": [640, 360]}
    }
    assert _engine_options("640,360", False)["active_speaker_detection"]["frame_number"] == 0


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("bench", "--audio", str(media_path("speech/arctic_a0009.wav")), *args)


@pytest.mark.slow
@pytest.mark.parametrize("picture", ["video/grid_bbaf2n.mpg", "photo/obama.jpg"])
def test_bench_times_the_engine_against_its_floor(picture: str) -> None:
    result = _bench("--video", str(media_path(picture)), "--repeat", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [run["run"] for run in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert run["frames"] == 77  # 3.08 s of speech at 25 fps, as generate makes it
        assert run["rtf"] == pytest.approx(run["frames"] / run["fps"] / 3.08, rel=0.02)
        # The floor is the decode + encode alone: the lip-sync costs more than nothing.
        assert run["engine_over_floor"] > 1 and run["cpu_ms_per_frame"] > 0
        assert {"decode", "track", "render", "encode"} <= set(run["stage_ms_per_frame"])
    assert 100 < report["peak_mib"] < 4096


@pytest.mark.slow
def test_bench_prints_its_figures_for_people() -> None:
    result = _bench("--video", str(media_path("video/grid_bbaf2n.mpg")), "--repeat", "1")
    assert result.returncode == 0, result.stderr
    assert "run 1 (first in this process" in result.stdout and "x the floor" in result.stdout
    assert "peak memory" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "exit_code"),
    [
        (["--video", "missing.mp4"], "file_not_found", 2),
        (["--video", "video/grid_bbaf2n.mpg", "--repeat", "0"], "invalid_option", 2),
        (["--video", "video/grid_bbaf2n.mpg", "--temperature", "3"], "invalid_option", 2),
        (["--video", "speech/arctic_a0009.wav"], "generation_video_missing", 1),
    ],
)
def test_bench_fails_with_one_clear_line(args: list[str], code: str, exit_code: int) -> None:
    args = [str(media_path(a)) if "/" in a else a for a in args]
    result = _bench(*args)
    assert result.returncode == exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}: "), result.stderr


@pytest.fixture
def web(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A loopback web server with a face video, a voice and a login page saved as .mp4."""
    from tests.http_media import serve_directory

    root = tmp_path / "site"
    root.mkdir()
    for name in ("video/grid_bbaf2n.mpg", "speech/arctic_a0009.wav"):
        (root / Path(name).name).write_bytes(media_path(name).read_bytes())
    (root / "page.mp4").write_text("<!doctype html><html><body>Please log in</body></html>")
    with serve_directory(root) as url:
        yield url


@pytest.mark.slow
def test_generate_takes_urls(tmp_path: Path, web: str) -> None:
    out = tmp_path / "o.mp4"
    result = run_cli(
        "generate",
        "--video",
        f"{web}/grid_bbaf2n.mpg",
        "--audio",
        f"{web}/arctic_a0009.wav?version=2",
        "-o",
        str(out),
        "-q",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 77  # 3.08 s of the voice


@pytest.mark.parametrize(
    ("video", "audio", "code"),
    [
        ("missing.mp4", "arctic_a0009.wav", "generation_input_video_inaccessible"),
        ("page.mp4", "arctic_a0009.wav", "generation_input_video_inaccessible"),
        ("grid_bbaf2n.mpg", "missing.wav", "generation_input_audio_inaccessible"),
    ],
)
def test_a_url_that_gives_no_media_is_one_clear_line(
    tmp_path: Path, web: str, video: str, audio: str, code: str
) -> None:
    result = run_cli(
        "generate", "--video", f"{web}/{video}", "--audio", f"{web}/{audio}",
        "-o", str(tmp_path / "o.mp4"), "-q",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}: "), result.stderr
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_a_slow_download_is_waited_for_past_the_servers_deadline(tmp_path: Path) -> None:
    """The API gives a URL OPENLIPSYNC_FETCH_TIMEOUT_SECONDS in all; a person's download of a
    big clip over a slow link takes longer, and only a stall should end it."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = media_path("speech/arctic_a0009.wav").read_bytes()

    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = len(body) // 10 + 1
            for start in range(0, len(body), step):  # 10 pieces over 2.5 s
                self.wfile.write(body[start : start + step])
                self.wfile.flush()
                time.sleep(0.25)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/voice.wav"
        result = subprocess.run(
            [sys.executable, "-m", "openlipsync.cli", "generate", "-q", "--video",
             str(media_path("video/grid_bbaf2n.mpg")), "--audio", url, "-o",
             str(tmp_path / "o.mp4")],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "OPENLIPSYNC_FETCH_TIMEOUT_SECONDS": "1"},
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o.mp4").exists()
