"""Validation of create-generation bodies (spec §3.1, §8, §10), NestJS style.

Hand-written rather than pydantic because the wire rules are unusual: `null` means absent,
unknown keys are kept or ignored, every violation is reported (one message each), and the
normalized body is what gets stored and echoed back.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from openlipsync.api.errors import ApiError

MODELS = ("lipsync-2", "lipsync-1.9.0-beta", "lipsync-2-pro", "react-1", "sync-3")
SYNC_MODES = ("bounce", "loop", "cut_off", "silence", "remap")
MODEL_MODES = ("lips", "face", "head")
EMOTIONS = ("happy", "sad", "angry", "disgusted", "surprised", "neutral")
INPUT_TYPES = ("video", "audio", "text", "image")
VISUAL_TYPES = ("video", "image")
DRIVER_TYPES = ("audio", "text")
MEDIA_TYPES = ("video", "audio", "image")
DEFAULT_SYNC_MODE = "loop"
MAX_URL_LENGTH = 4096
MAX_SCRIPT_LENGTH = 20_000
MAX_INPUTS = 64
MAX_SEGMENTS = 1000

CODE_INVALID = "generation_input_validation_failed"
CODE_MODEL = "generation_unsupported_model"
CODE_VIDEO_MISSING = "generation_video_missing"
CODE_AUDIO_MISSING = "generation_audio_missing"


@dataclass
class Problems:
    """Collected violations; the first one's code becomes the response's `errorCode`."""

    messages: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)

    def add(self, message: str, code: str = CODE_INVALID) -> None:
        self.messages.append(message)
        self.codes.append(code)

    def raise_if_any(self) -> None:
        if self.messages:
            raise ApiError(400, self.messages, self.codes[0])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str | bytes) -> Any:
    """json.loads without the NaN/Infinity extensions, which could be neither stored nor echoed."""
    return json.loads(text, parse_constant=_reject_constant)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def as_bool(value: Any) -> bool | None:
    """JSON booleans, or the strings multipart forms carry; None when neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def check_http_url(value: Any, where: str, problems: Problems) -> str | None:
    """Only absolute http(s) URLs: the worker fetches them, so file:// etc. must never pass."""
    if not isinstance(value, str) or not value.strip():
        problems.add(f"{where} must be a non-empty string")
        return None
    url = value.strip()
    if len(url) > MAX_URL_LENGTH:
        problems.add(f"{where} must be at most {MAX_URL_LENGTH} characters")
        return None
    try:
        parsed = urlparse(url)
        host = parsed.hostname
    except ValueError:
        host = None
        parsed = None
    if parsed is None or parsed.scheme.lower() not in ("http", "https") or not host:
        problems.add(f"{where} must be an absolute http(s) URL")
        return None
    return url


def validate_generation(body: Any) -> dict[str, Any]:
    """The normalized create body, or ApiError(400) listing every violation."""
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", CODE_INVALID)
    problems = Problems()
    model = _model(body.get("model"), problems)
    inputs = _inputs(body.get("input"), problems)
    segments = _segments(body.get("segments"), problems)
    _input_rules(model, inputs, segments, problems)
    options = _options(body.get("options"), inputs, problems)
    webhook = body.get("webhookUrl")
    if webhook is not None:
        webhook = check_http_url(webhook, "webhookUrl", problems)
    output_name = _output_file_name(body.get("outputFileName"), problems)
    problems.raise_if_any()
    return {
        "model": model,
        "input": inputs,
        "options": options,
        "segments": segments,
        "webhookUrl": webhook,
        "outputFileName": output_name,
    }


def _model(value: Any, problems: Problems) -> str | None:
    if value is None:
        problems.add(f"model must be one of the following values: {', '.join(MODELS)}", CODE_MODEL)
        return None
    if not isinstance(value, str) or value not in MODELS:
        problems.add(f"model must be one of the following values: {', '.join(MODELS)}", CODE_MODEL)
        return None
    return value


def _inputs(value: Any, problems: Problems) -> list[dict[str, Any]]:
    if value is None:
        problems.add("input is required: an array with a video and an audio input")
        return []
    if not isinstance(value, list):
        problems.add("input must be an array")
        return []
    if len(value) > MAX_INPUTS:
        problems.add(f"input must contain at most {MAX_INPUTS} items")
        return []
    result = []
    for index, item in enumerate(value):
        normalized = _input_item(item, f"input[{index}]", problems)
        if normalized is not None:
            result.append(normalized)
    return result


def _input_item(item: Any, where: str, problems: Problems) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        problems.add(f"{where} must be an object")
        return None
    kind = item.get("type")
    if kind not in INPUT_TYPES:
        problems.add(f"{where}.type must be one of the following values: {', '.join(INPUT_TYPES)}")
        return None
    normalized: dict[str, Any] = {"type": kind}
    if kind in MEDIA_TYPES:
        _media_source(item, where, normalized, problems)
    if kind == "video":
        _deprecated_segments(item, where, normalized, problems)
    if kind in DRIVER_TYPES:
        ref = item.get("refId")
        if ref is not None:
            if not isinstance(ref, str) or not ref.strip() or len(ref) > 255:
                problems.add(f"{where}.refId must be a non-empty string (max 255 characters)")
            else:
                normalized["refId"] = ref
    if kind == "audio" and item.get("transcript") is not None:
        _transcript(item["transcript"], where, normalized, problems)
    if kind == "text":
        provider = _provider(item.get("provider"), f"{where}.provider", problems)
        if provider is not None:
            normalized["provider"] = provider
    return normalized


MAX_TRANSCRIPT_CHARS = 10_000


def _transcript(value: Any, where: str, normalized: dict, problems: Problems) -> None:
    """openlipsync extension: the English words of an audio input, for phone-exact mouths."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TRANSCRIPT_CHARS:
        problems.add(
            f"{where}.transcript must be a non-empty string of at most "
            f"{MAX_TRANSCRIPT_CHARS} characters"
        )
    else:
        normalized["transcript"] = value


def _media_source(item: dict, where: str, normalized: dict, problems: Problems) -> None:
    url, asset_id = item.get("url"), item.get("assetId")
    if url is None and asset_id is None:
        problems.add(f"{where} must have a url or an assetId")
        return
    if url is not None and asset_id is not None:
        problems.add(f"{where} must have either url or assetId, not both")
        return
    if url is not None:
        checked = check_http_url(url, f"{where}.url", problems)
        if checked is not None:
            normalized["url"] = checked
    elif not isinstance(asset_id, str) or not asset_id.strip() or len(asset_id) > 64:
        problems.add(f"{where}.assetId must be a non-empty string")
    else:
        normalized["assetId"] = asset_id


def _deprecated_segments(item: dict, where: str, normalized: dict, problems: Problems) -> None:
    for key, integral in (("segments_secs", False), ("segments_frames", True)):
        value = item.get(key)
        if value is None:
            continue
        ranges = _ranges(value, f"{where}.{key}", integral, problems)
        if ranges is not None:
            normalized[key] = ranges


def _ranges(value: Any, where: str, integral: bool, problems: Problems) -> list | None:
    if not isinstance(value, list) or len(value) > MAX_SEGMENTS:
        problems.add(f"{where} must be an array of [start, end] pairs")
        return None
    for pair in value:
        valid = (
            isinstance(pair, list)
            and len(pair) == 2
            and all(is_number(x) and x >= 0 for x in pair)
            and (not integral or all(float(x).is_integer() for x in pair))
        )
        if not valid:
            kind = "non-negative integer" if integral else "non-negative number"
            problems.add(f"{where} must contain [start, end] pairs of {kind}s")
            return None
        if (integral and pair[0] >= pair[1]) or (not integral and pair[0] > pair[1]):
            relation = "<" if integral else "<="
            problems.add(f"{where} requires start {relation} end in every pair")
            return None
    return [[int(a), int(b)] for a, b in value] if integral else value


def _provider(value: Any, where: str, problems: Problems) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        problems.add(f"{where} must be an object with name, voiceId and script")
        return None
    provider: dict[str, Any] = {}
    if value.get("name") != "elevenlabs":
        problems.add(f"{where}.name must be one of the following values: elevenlabs")
    else:
        provider["name"] = "elevenlabs"
    for key, limit in (("voiceId", 255), ("script", MAX_SCRIPT_LENGTH)):
        text = value.get(key)
        if not isinstance(text, str) or not text.strip() or len(text) > limit:
            problems.add(f"{where}.{key} must be a non-empty string (max {limit} characters)")
        else:
            provider[key] = text
    for key in ("stability", "similarityBoost"):
        number = value.get(key)
        if number is None:
            continue
        if not is_number(number) or not 0 <= number <= 1:
            problems.add(f"{where}.{key} must be a number between 0 and 1")
        else:
            provider[key] = number
    return provider


def _segments(value: Any, problems: Problems) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_SEGMENTS:
        problems.add(f"segments must be an array (at most {MAX_SEGMENTS} items)")
        return None
    if not value:
        return None
    result = []
    for index, item in enumerate(value):
        where = f"segments[{index}]"
        if not isinstance(item, dict):
            problems.add(f"{where} must be an object")
            continue
        segment: dict[str, Any] = {}
        _time_range(item, where, segment, problems, required=True)
        audio = item.get("audioInput")
        if not isinstance(audio, dict):
            problems.add(f"{where}.audioInput must be an object with a refId")
        else:
            audio_input: dict[str, Any] = {}
            ref = audio.get("refId")
            if not isinstance(ref, str) or not ref.strip():
                problems.add(f"{where}.audioInput.refId must be a non-empty string")
            else:
                audio_input["refId"] = ref
            _time_range(audio, f"{where}.audioInput", audio_input, problems, required=False)
            segment["audioInput"] = audio_input
        override = item.get("optionsOverride")
        if override is not None:
            if isinstance(override, dict):
                segment["optionsOverride"] = override
            else:
                problems.add(f"{where}.optionsOverride must be an object")
        result.append(segment)
    return result


def _time_range(item: dict, where: str, out: dict, problems: Problems, required: bool) -> None:
    start, end = item.get("startTime"), item.get("endTime")
    if start is None and end is None and not required:
        return
    if (start is None) != (end is None) and not required:
        problems.add(f"{where}: startTime and endTime must be given together (or neither)")
        return
    ok = True
    for key, number in (("startTime", start), ("endTime", end)):
        if not is_number(number) or number < 0:
            problems.add(f"{where}.{key} must be a non-negative number (seconds)")
            ok = False
    if ok and start > end:
        problems.add(f"{where}: startTime must be less than or equal to endTime")
    elif ok:
        out["startTime"], out["endTime"] = start, end


def _input_rules(
    model: str | None,
    inputs: list[dict[str, Any]],
    segments: list[dict[str, Any]] | None,
    problems: Problems,
) -> None:
    visuals = [item for item in inputs if item["type"] in VISUAL_TYPES]
    drivers = [item for item in inputs if item["type"] in DRIVER_TYPES]
    if not visuals:
        problems.add(
            "input must contain a video input (or, for sync-3, an image input)", CODE_VIDEO_MISSING
        )
    elif len(visuals) > 1:
        problems.add("input must contain exactly one video or image input")
    if any(item["type"] == "image" for item in visuals) and model not in (None, "sync-3"):
        problems.add("image input is only supported by model sync-3", CODE_MODEL)
    if not drivers:
        problems.add("input must contain an audio or text input", CODE_AUDIO_MISSING)
    elif len(drivers) > 1 and not segments:
        problems.add("several audio/text inputs require segments (one driver per segment)")
    refs = [item["refId"] for item in drivers if "refId" in item]
    if len(refs) != len(set(refs)):
        problems.add("refId values must be unique across input")
    if segments and len(drivers) > 1 and len(refs) != len(drivers):
        problems.add("with segments and several audio/text inputs, each needs a refId")
    for index, segment in enumerate(segments or ()):
        ref = segment.get("audioInput", {}).get("refId")
        if ref is not None and ref not in refs:
            problems.add(f"segments[{index}].audioInput.refId '{ref}' matches no input refId")


def _options(value: Any, inputs: list[dict[str, Any]], problems: Problems) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        problems.add("options must be an object")
        return {"sync_mode": DEFAULT_SYNC_MODE}
    # Unknown (legacy or newer) option keys are echoed, never rejected; nulls are dropped.
    options = {key: item for key, item in value.items() if item is not None}
    _enum_option(options, "sync_mode", SYNC_MODES, problems)
    _enum_option(options, "model_mode", MODEL_MODES, problems)
    _enum_option(options, "prompt", EMOTIONS, problems)
    options.setdefault("sync_mode", DEFAULT_SYNC_MODE)
    if "temperature" in options and (
        not is_number(options["temperature"]) or not 0 <= options["temperature"] <= 1
    ):
        problems.add("options.temperature must be a number between 0 and 1")
    if "occlusion_detection_enabled" in options:
        flag = as_bool(options["occlusion_detection_enabled"])
        if flag is None:
            problems.add("options.occlusion_detection_enabled must be a boolean")
        else:
            options["occlusion_detection_enabled"] = flag
    if "active_speaker_detection" in options:
        is_image = any(item["type"] == "image" for item in inputs)
        options["active_speaker_detection"] = _speaker(
            options["active_speaker_detection"], is_image, problems
        )
    return options


def _enum_option(options: dict, key: str, allowed: tuple[str, ...], problems: Problems) -> None:
    if key in options and options[key] not in allowed:
        problems.add(f"options.{key} must be one of the following values: {', '.join(allowed)}")


def _speaker(value: Any, is_image: bool, problems: Problems) -> Any:
    where = "options.active_speaker_detection"
    if not isinstance(value, dict):
        problems.add(f"{where} must be an object")
        return value
    speaker = {key: item for key, item in value.items() if item is not None}
    if "auto_detect" in speaker:
        flag = as_bool(speaker["auto_detect"])
        if flag is None:
            problems.add(f"{where}.auto_detect must be a boolean")
        else:
            speaker["auto_detect"] = flag
            if flag and is_image:
                problems.add(f"{where}.auto_detect is not supported for image inputs")
    frame = speaker.get("frame_number")
    if frame is not None and not (is_number(frame) and float(frame).is_integer() and frame >= 0):
        problems.add(f"{where}.frame_number must be a non-negative integer")
    coords = speaker.get("coordinates")
    if coords is not None and not (
        isinstance(coords, list) and len(coords) == 2 and all(is_number(c) for c in coords)
    ):
        problems.add(f"{where}.coordinates must be [x, y]")
    boxes = speaker.get("bounding_boxes")
    if boxes is not None and not (
        isinstance(boxes, list)
        and all(
            box is None or (isinstance(box, list) and len(box) == 4 and all(map(is_number, box)))
            for box in boxes
        )
    ):
        problems.add(f"{where}.bounding_boxes must be an array of [x1, y1, x2, y2] or null")
    return speaker


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


def _output_file_name(value: Any, problems: Problems) -> str | None:
    """Sanitise rather than reject (spec §3.1): spaces become `_`, other characters vanish."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add("outputFileName must be a string")
        return None
    if len(value) > 255:
        problems.add("outputFileName must be at most 255 characters")
        return None
    name = re.sub(r"\.mp4$", "", value.strip(), flags=re.IGNORECASE).replace(" ", "_")
    return _UNSAFE_NAME.sub("", name) or None
