"""The `openlipsync` command line: serve, worker, generate, keys, bench.

Exit codes: 0 success; 1 the generation failed (bad media, no face, ...); 2 usage error;
130 interrupted. Every failure prints one line `error: <code>: <message>` on stderr.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MP4_SUFFIXES = ("", ".mp4", ".m4v", ".mov")  # what players take an MP4 for
CLI_FETCH_SECONDS = 3600.0  # how long a URL input may take to download (see _fetch_urls)


def _fail(code: str, message: str, exit_code: int = EXIT_FAILED) -> int:
    print(f"error: {code}: {message}", file=sys.stderr)
    return exit_code


class ProgressBar:
    """A tqdm bar showing the engine's current stage; silent when disabled or not a terminal."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=100,
                unit="%",
                bar_format="{desc:<8} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
            )
        return self

    def update(self, stage: str, fraction: float) -> None:
        if self._bar is not None:
            self._bar.set_description_str(stage)
            self._bar.n = round(fraction * 100, 1)
            self._bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _speak(text: str, voice: str, scratch: Path):  # -> openlipsync.tts.base.Speech
    """Synthesise `text` with a local voice (offline, no key), keeping its phone timings."""
    from openlipsync.settings import get_settings
    from openlipsync.tts.registry import get_provider

    return get_provider("local", get_settings()).synthesize(text, voice, scratch)


def _engine_options(speaker: str | None, occlusion: bool) -> dict:
    """The API's options for --speaker ('auto', or 'X,Y' / 'X,Y@FRAME': a pixel on the face
    to lip-sync, in frame FRAME, 0 by default) and --occlusion."""
    options: dict = {"occlusion_detection_enabled": True} if occlusion else {}
    if speaker is None:
        return options
    if speaker.strip().lower() == "auto":
        options["active_speaker_detection"] = {"auto_detect": True}
        return options
    point, _, frame = speaker.partition("@")
    try:
        x, y = (int(part) for part in point.split(","))
        frame_number = int(frame) if frame else 0
    except ValueError:
        raise ValueError(f"expected auto, X,Y or X,Y@FRAME (pixels), got {speaker!r}") from None
    if min(x, y, frame_number) < 0:
        raise ValueError(f"pixels and frame must not be negative, got {speaker!r}")
    options["active_speaker_detection"] = {"frame_number": frame_number, "coordinates": [x, y]}
    return options


def _request(args: argparse.Namespace, output: Path):  # -> openlipsync.engine.GenerateRequest
    """The engine request `args` ask for; ValueError (with the flag to blame) when they do not
    make sense, FileNotFoundError for an input that is not there. Checked before any work."""
    from openlipsync.engine import GenerateRequest

    if not 0.0 <= args.temperature <= 1.0:
        raise ValueError("--temperature must be between 0 and 1")
    try:
        options = _engine_options(args.speaker, args.occlusion)
    except ValueError as exc:
        raise ValueError(f"--speaker: {exc}") from None
    for label, path in (("video", args.video), ("audio", args.audio)):
        if path is not None and not _is_url(path) and not Path(path).is_file():
            raise FileNotFoundError(f"{label} file not found: {path}")
    return GenerateRequest(
        video=Path(args.video),  # a URL's download replaces it (_fetch_urls)
        audio=Path(args.audio or ""),
        output=output,
        sync_mode=args.sync_mode,
        temperature=args.temperature,
        model=args.model,
        transcript=getattr(args, "transcript", None),
        options=options,
    )


def _is_url(path: str) -> bool:
    return path.lower().startswith(("http://", "https://"))


def _fetch_urls(request, args: argparse.Namespace, scratch: Path, quiet: bool) -> None:  # type: ignore[no-untyped-def]
    """Download the inputs `args` give as URLs into `scratch` and point `request` at them,
    under the deployment's size limit; any address the user names may be reached (a NAS on
    the LAN), as OPENLIPSYNC_ALLOW_PRIVATE_URLS allows in the API. Raises InputError with the
    API's error code for the failure."""
    from openlipsync.jobs.inputs import fetch_input
    from openlipsync.settings import get_settings

    settings = get_settings()
    settings = settings.model_copy(
        update={
            "allow_private_urls": True,
            # The server's deadline (30 s) suits a request; a person downloading a large
            # clip waits longer. A connection that stalls still fails after 10 s.
            "fetch_timeout_seconds": max(settings.fetch_timeout_seconds, CLI_FETCH_SECONDS),
        }
    )
    for kind in ("video", "audio"):
        url = getattr(args, kind)
        if url is None or not _is_url(url):
            continue
        if not quiet:
            print(f"downloading {url}", file=sys.stderr)
        name = Path(url.split("?")[0].split("#")[0]).name or kind
        setattr(request, kind, fetch_input(url, scratch / f"{kind}-{name}", kind, settings))


def _usage_error(exc: ValueError | FileNotFoundError) -> int:
    code = "file_not_found" if isinstance(exc, FileNotFoundError) else "invalid_option"
    return _fail(code, str(exc), EXIT_USAGE)


def cmd_generate(args: argparse.Namespace) -> int:
    from openlipsync.engine import EngineError, generate
    from openlipsync.jobs.inputs import InputError
    from openlipsync.tts.base import TtsError

    try:
        request = _request(args, Path(args.output))
    except (ValueError, FileNotFoundError) as exc:
        return _usage_error(exc)
    if Path(args.output).suffix.lower() not in MP4_SUFFIXES:
        return _fail(
            "output_format",
            f"the output is an MP4 (H.264 + AAC): name it .mp4, not {Path(args.output).name}",
            EXIT_USAGE,
        )
    blocking = next((p for p in Path(args.output).absolute().parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():  # found before the work, not after it
        return _fail("output_unwritable", f"{blocking} is not a folder", EXIT_USAGE)
    try:
        with tempfile.TemporaryDirectory(prefix="openlipsync-") as scratch:
            _fetch_urls(request, args, Path(scratch), args.quiet)
            if args.text is not None:
                speech = _speak(args.text, args.voice, Path(scratch))
                request.audio, request.phonemes = speech.audio_path, speech.phonemes
            with ProgressBar(enabled=not args.quiet) as bar:
                result = generate(request, progress=bar.update)
    except (EngineError, InputError, TtsError) as exc:
        return _fail(exc.code, exc.message)
    except KeyboardInterrupt:
        return _fail("interrupted", "stopped by the user", EXIT_INTERRUPTED)
    except OSError as exc:  # a full scratch disk (TMPDIR), an output that cannot be written
        return _io_error(exc)
    print(
        f"wrote {result.output} ({result.width}x{result.height}, {result.frame_count} frames, "
        f"{result.duration:.2f} s)"
    )
    return EXIT_OK


def _io_error(exc: OSError) -> int:
    where = f" ({exc.filename})" if exc.filename else ""
    return _fail("io_error", f"{exc.strerror or exc}{where}")


def cmd_bench(args: argparse.Namespace) -> int:
    from openlipsync.engine import EngineError
    from openlipsync.jobs.inputs import InputError

    if args.repeat < 1:
        return _fail("invalid_option", "--repeat must be at least 1", EXIT_USAGE)
    try:
        with tempfile.TemporaryDirectory(prefix="openlipsync-bench-") as scratch:
            request = _request(args, Path(scratch) / "out.mp4")
            _fetch_urls(request, args, Path(scratch), quiet=args.json)
            _bench(request, args.repeat, Path(scratch) / "floor.mp4", args.json)
    except (ValueError, FileNotFoundError) as exc:
        return _usage_error(exc)
    except (EngineError, InputError) as exc:
        return _fail(exc.code, exc.message)
    except KeyboardInterrupt:
        return _fail("interrupted", "stopped by the user", EXIT_INTERRUPTED)
    except OSError as exc:
        return _io_error(exc)
    return EXIT_OK


def _bench(request, repeat: int, floor_output: Path, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    import json

    from openlipsync import benchmark

    rows = []
    for row in benchmark.rows(request, repeat, floor_output):
        rows.append(row)
        if not as_json:
            print(benchmark.describe(row))
    if as_json:
        print(json.dumps({"runs": rows, "peak_mib": round(benchmark.peak_mib())}))
    else:
        print(f"peak memory {benchmark.peak_mib():.0f} MiB")


def cmd_serve(args: argparse.Namespace) -> int:
    from openlipsync.jobs.runner import serve
    from openlipsync.settings import get_settings

    return serve(get_settings(), host=args.host, port=args.port, with_worker=not args.no_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from openlipsync.jobs.runner import worker
    from openlipsync.settings import get_settings

    return worker(get_settings(), concurrency=args.concurrency)


def cmd_keys(args: argparse.Namespace) -> int:
    from openlipsync.settings import get_settings
    from openlipsync.store import keys
    from openlipsync.store.db import open_database

    sessions = open_database(get_settings())
    with sessions() as session:
        if args.keys_command == "create":
            plaintext, key = keys.create_key(session, name=args.name, organization_id=args.org)
            print(f"created key {key.id} for organisation {key.organization_id}")
            print(plaintext)
        elif args.keys_command == "list":
            for key in keys.list_keys(session):
                state = "revoked" if key.revoked_at else "active"
                print(f"{key.id}  {key.prefix}…  {key.name}  org={key.organization_id}  {state}")
        elif not keys.revoke_key(session, args.key):
            return _fail("key_not_found", f"no such key: {args.key}")
        else:
            print(f"revoked {args.key}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openlipsync", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="lip-sync one video to one audio track, no server")
    gen.add_argument("--video", required=True, help="video or photo of a face (a path or URL)")
    driver = gen.add_mutually_exclusive_group(required=True)
    driver.add_argument("--audio", help="the new voice (any audio or video file; path or URL)")
    driver.add_argument("--text", help="a script to speak with a local voice instead of --audio")
    gen.add_argument("--voice", default="en_US-joe-medium", help="local voice for --text")
    gen.add_argument("--transcript", help="English transcript of --audio: phone-exact mouth shapes")
    gen.add_argument("-o", "--output", required=True, help="output MP4 path")
    _add_engine_arguments(gen)
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=cmd_generate)

    bench = sub.add_parser(
        "bench",
        help="how fast this machine lip-syncs your clip, against its decode + encode floor",
    )
    bench.add_argument("--video", required=True, help="video or photo of a face")
    bench.add_argument("--audio", required=True, help="the voice (any audio or video file)")
    _add_engine_arguments(bench)
    bench.add_argument("--repeat", type=int, default=2, help="generations to time (default 2)")
    bench.add_argument("--json", action="store_true", help="one JSON line instead of text")
    bench.set_defaults(func=cmd_bench)

    serve = sub.add_parser("serve", help="run the API (and an embedded worker)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--no-worker", action="store_true", help="API only")
    serve.set_defaults(func=cmd_serve)

    work = sub.add_parser("worker", help="run a job worker only")
    work.add_argument("--concurrency", type=int, default=1)
    work.set_defaults(func=cmd_worker)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints it alone on the last line")
    create.add_argument("--name", required=True)
    create.add_argument("--org", default=None, help="organisation id (default: a new one)")
    keys_sub.add_parser("list", help="list keys (never shows the secret)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key")
    keys.set_defaults(func=cmd_keys)
    return parser


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    from openlipsync.engine.request import DEFAULT_SYNC_MODE, SYNC_MODES

    parser.add_argument("--sync-mode", choices=SYNC_MODES, default=DEFAULT_SYNC_MODE)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--model", default="lipsync-2")
    parser.add_argument(
        "--speaker",
        metavar="auto|X,Y[@FRAME]",
        help="with several faces: 'auto' lip-syncs who speaks (turn by turn), X,Y the face at "
        "that pixel (of frame FRAME, 0 by default); the largest face otherwise",
    )
    parser.add_argument(
        "--occlusion", action="store_true", help="leave frames alone where the mouth is covered"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
