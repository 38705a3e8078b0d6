"""Turn a generation's `input[]` into local files the engine can read, with precise failures.

Inputs arrive as asset ids (multipart uploads are stored as assets too) or public URLs; both end
up in the generation's scratch directory. Every way this can fail maps to one `error_code`, so a
client can tell "your URL is a web page" from "your video is too long" from "we broke".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlipsync.engine.request import SegmentAudio
from openlipsync.jobs.fetch import FetchError, fetch_within_limits
from openlipsync.settings import Settings
from openlipsync.store.files import Storage
from openlipsync.store.models import Asset, Generation
from openlipsync.tts.base import PhonemeTiming, Speech

VISUAL_TYPES = ("video", "image")
DRIVER_TYPES = ("audio", "text")


class InputError(Exception):
    """An input could not be turned into a usable file; `code` becomes the `error_code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class LocalInputs:
    video: Path
    audio: Path
    synthesized_audio: Path | None = None  # set when the audio came from text to speech
    phonemes: list[PhonemeTiming] | None = None  # the TTS's phone timings, when it gives them
    segments: list[SegmentAudio] | None = None  # spec §8, each with its own local audio file


def inaccessible_code(kind: str) -> str:
    # The spec names only the video code; audio gets the matching name.
    if kind == "audio":
        return "generation_input_audio_inaccessible"
    return "generation_input_video_inaccessible"


@dataclass
class Source:
    """Where one input's bytes come from, decided while the database session is open."""

    kind: str  # video | audio | text
    storage_key: str | None = None
    url: str | None = None
    text: dict[str, Any] | None = None  # the TTS input item


@dataclass
class InputPlan:
    visual: Source
    driver: Source  # with segments: the first driver they reference
    segments: list[dict[str, Any]] | None = None  # the validated top-level `segments`
    drivers: dict[str, Source] = field(default_factory=dict)  # refId -> source, as referenced
    ranges: tuple[str, list[list[float]]] | None = None  # ("segments_secs"|"segments_frames", …)


def plan_inputs(session: Session, generation: Generation) -> InputPlan:
    """Pick the inputs and look up their assets; no I/O beyond the database (kept short, so no
    transaction stays open during a long download)."""
    visual = _first(generation.input, VISUAL_TYPES)
    driver = _first(generation.input, DRIVER_TYPES)
    if visual is None:
        raise InputError("generation_video_missing", "the request has no video or image input")
    if driver is None:
        raise InputError("generation_audio_missing", "the request has no audio or text input")
    video = _source(session, generation, visual, "video")
    if generation.segments:  # top-level segments win over the deprecated ranges
        drivers = _segment_drivers(session, generation)
        return InputPlan(video, next(iter(drivers.values())), generation.segments, drivers)
    plan = InputPlan(video, _driver_source(session, generation, driver))
    plan.ranges = _deprecated_ranges(visual)
    return plan


def _driver_source(session: Session, generation: Generation, item: dict[str, Any]) -> Source:
    if item["type"] == "text":
        return Source("text", text=item)
    return _source(session, generation, item, "audio")


def _segment_drivers(session: Session, generation: Generation) -> dict[str, Source]:
    """The audio/text inputs the segments reference, by refId, in order of first use."""
    by_ref = {
        item["refId"]: item
        for item in generation.input or []
        if item.get("type") in DRIVER_TYPES and item.get("refId")
    }
    drivers: dict[str, Source] = {}
    for index, segment in enumerate(generation.segments or []):
        ref = (segment.get("audioInput") or {}).get("refId")
        if ref in drivers:
            continue
        if ref not in by_ref:
            raise InputError(
                "generation_audio_missing",
                f"segments[{index}] references refId {ref!r}, which no audio or text input has",
            )
        drivers[ref] = _driver_source(session, generation, by_ref[ref])
    if not drivers:
        raise InputError("generation_audio_missing", "the segments reference no audio input")
    return drivers


def _deprecated_ranges(visual: dict[str, Any]) -> tuple[str, list[list[float]]] | None:
    for key in ("segments_secs", "segments_frames"):
        if visual.get(key):
            return key, visual[key]
    return None


def fetch_inputs(
    plan: InputPlan, workdir: Path, storage: Storage, settings: Settings
) -> LocalInputs:
    """Bring both inputs into `workdir` (download, fetch or synthesise) and check their length."""
    video = _materialize(plan.visual, workdir / "video", storage, settings)
    if plan.segments:
        result = _fetch_segment_drivers(plan, video, workdir, storage, settings)
    elif plan.driver.text is not None:
        speech = synthesize(plan.driver.text, workdir, settings)
        audio = Path(speech.audio_path)
        result = LocalInputs(
            video=video, audio=audio, synthesized_audio=audio, phonemes=speech.phonemes
        )
    else:
        audio = _materialize(plan.driver, workdir / "audio", storage, settings)
        result = LocalInputs(video=video, audio=audio)
    if plan.ranges is not None:
        result.segments = _deprecated_segments(plan.ranges, video, result.audio)
    check_durations(result, settings)
    return result


def _fetch_segment_drivers(
    plan: InputPlan, video: Path, workdir: Path, storage: Storage, settings: Settings
) -> LocalInputs:
    """Every driver the segments reference, each once; text is spoken (its phone timings are
    of the whole script, so segments ignore them)."""
    paths: dict[str, Path] = {}
    synthesized: Path | None = None
    for index, (ref, source) in enumerate(plan.drivers.items()):
        if source.text is not None:
            speech = synthesize(source.text, workdir / f"driver-{index}", settings)
            paths[ref] = Path(speech.audio_path)
            synthesized = synthesized or paths[ref]
        else:
            paths[ref] = _materialize(source, workdir / f"audio-{index}", storage, settings)
    segments = [
        SegmentAudio(
            start=float(segment["startTime"]),
            end=float(segment["endTime"]),
            audio=paths[segment["audioInput"]["refId"]],
            audio_start=_seconds(segment["audioInput"].get("startTime")),
            audio_end=_seconds(segment["audioInput"].get("endTime")),
        )
        for segment in plan.segments or []
    ]
    first = next(iter(paths.values()))
    return LocalInputs(video=video, audio=first, synthesized_audio=synthesized, segments=segments)


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _deprecated_segments(
    ranges: tuple[str, list[list[float]]], video: Path, audio: Path
) -> list[SegmentAudio]:
    """`segments_secs`/`segments_frames`: the single driver on the video's own timeline."""
    from openlipsync.engine.errors import EngineError
    from openlipsync.engine.segments import from_frames, from_seconds
    from openlipsync.media.probe import probe

    key, pairs = ranges
    if key == "segments_secs":
        return from_seconds(pairs, audio)
    try:
        info = probe(video).video
    except EngineError as exc:
        raise InputError(exc.code, f"the video input: {exc.message}") from exc
    if info is None:
        raise InputError("generation_video_missing", "the video input has no picture")
    return from_frames(pairs, info.fps, audio)


def _first(inputs: list[dict[str, Any]], types: tuple[str, ...]) -> dict[str, Any] | None:
    return next((item for item in inputs or [] if item.get("type") in types), None)


def _source(session: Session, generation: Generation, item: dict[str, Any], kind: str) -> Source:
    if item.get("assetId"):
        asset = session.scalar(
            select(Asset).where(
                Asset.id == item["assetId"], Asset.organization_id == generation.organization_id
            )
        )
        if asset is None:
            raise InputError(inaccessible_code(kind), f"asset {item['assetId']} does not exist")
        if not asset.storage_key and not asset.source_url:
            raise InputError(inaccessible_code(kind), f"asset {asset.id} has no file")
        return Source(kind, storage_key=asset.storage_key, url=asset.source_url)
    if item.get("url"):
        return Source(kind, url=item["url"])
    message = f"the {item['type']} input has no url or assetId"
    raise InputError(f"generation_{kind}_missing", message)


def _materialize(source: Source, dest: Path, storage: Storage, settings: Settings) -> Path:
    if source.storage_key:
        return _download(storage, source.storage_key, dest, source.kind)
    assert source.url is not None
    return fetch_input(source.url, dest, source.kind, settings)


def _download(storage: Storage, key: str, dest: Path, kind: str) -> Path:
    try:
        if not storage.exists(key):
            raise InputError(inaccessible_code(kind), f"the stored {kind} file has expired")
        return storage.download(key, dest)
    except InputError:
        raise
    except Exception as exc:  # any storage backend failure (disk, S3, network)
        raise InputError(
            "generation_storage_error", f"cannot read the stored {kind}: {exc}"
        ) from exc


def fetch_input(url: str, dest: Path, kind: str, settings: Settings) -> Path:
    """The `kind` ("video" / "audio") input at `url` as the file `dest`, or an InputError
    with the generation error code the failure deserves."""
    try:
        return fetch_within_limits(url, dest, settings).path
    except FetchError as exc:
        if exc.reason == "too_large":
            raise InputError("generation_input_validation_failed", exc.message) from exc
        if exc.reason == "not_media":  # we got the file, and it is not audio or video
            raise InputError("generation_media_unreadable", exc.message) from exc
        message = f"the {kind} URL could not be fetched: {exc.message}"
        raise InputError(inaccessible_code(kind), message) from exc


def synthesize(item: dict[str, Any], workdir: Path, settings: Settings) -> Speech:
    """Speak a text input with the provider its voice belongs to (local Piper or ElevenLabs)."""
    from openlipsync.tts import TtsError, provider_for_voice

    provider = item.get("provider") or {}
    voice_id = str(provider.get("voiceId") or "")
    try:
        tts = provider_for_voice(voice_id, settings, provider.get("name") or "elevenlabs")
        speech = tts.synthesize(
            provider.get("script"),
            voice_id,
            workdir / "tts",
            stability=provider.get("stability"),
            similarity_boost=provider.get("similarityBoost"),
        )
    except TtsError as exc:
        raise InputError(exc.code, f"text to speech failed: {exc.message}") from exc
    return speech


def check_durations(inputs: LocalInputs, settings: Settings) -> None:
    """Refuse inputs longer than the configured limit before spending engine time on them."""
    from openlipsync.engine.errors import EngineError
    from openlipsync.media.probe import probe

    limit = settings.max_input_seconds
    audio_paths = dict.fromkeys([inputs.audio, *(s.audio for s in inputs.segments or [])])
    labelled = [("audio", path) for path in audio_paths] + [("video", inputs.video)]
    for label, path in labelled:
        try:
            info = probe(path)
        except EngineError as exc:
            raise InputError(exc.code, f"the {label} input: {exc.message}") from exc
        streams = [info.audio] if label == "audio" else [info.video]
        duration = max((stream.duration for stream in streams if stream is not None), default=0)
        if duration > limit:
            raise InputError(
                "generation_audio_length_exceeded",
                f"the {label} input is {duration:.1f} s long; this server accepts at most "
                f"{limit:g} s",
            )
