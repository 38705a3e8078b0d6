"""Errors the engine raises, each carrying the `error_code` a FAILED generation reports."""

from __future__ import annotations


class EngineError(Exception):
    """A failure with a stable machine code (spec §17.3 plus openlipsync's own codes)."""

    code = "generation_pipeline_failed"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class MediaUnreadable(EngineError):
    code = "generation_media_unreadable"


class MediaMetadataMissing(EngineError):
    code = "generation_media_metadata_missing"


class VideoMissing(EngineError):
    code = "generation_video_missing"


class AudioMissing(EngineError):
    code = "generation_audio_missing"


class NoFaceFound(EngineError):
    code = "generation_no_face_detected"


class UnsupportedSize(EngineError):
    code = "generation_unsupported_resolution"


class InputTooLong(EngineError):
    code = "generation_audio_length_exceeded"


class Cancelled(EngineError):
    code = "generation_cancelled"
