"""Streaming multipart/form-data: file parts go straight to disk, limits apply while reading.

Starlette's `request.form()` spools whole files before any size check can run; here a part is
refused the moment it passes its limit, and memory use stays at one chunk per request.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from openlipsync.api.errors import ApiError

MAX_FIELD_BYTES = 1024 * 1024
MAX_PARTS = 35
MAX_FILES = 3
DRAIN_LIMIT = 64 * 1024 * 1024  # read (and discard) this much after a refusal so clients see it


@dataclass
class UploadedFile:
    field: str
    filename: str | None
    content_type: str | None
    path: Path
    size: int = 0
    sha256: str = ""


@dataclass
class Form:
    """Parsed form: text fields in order (repeats kept) and files on disk until `cleanup`."""

    directory: Path
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[UploadedFile] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def first(self, name: str) -> str | None:
        values = self.values(name)
        return values[0] if values else None

    def file(self, name: str) -> UploadedFile | None:
        return next((item for item in self.files if item.field == name), None)

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class _State:
    """Parser callbacks; raise ApiError to stop at the first violated limit."""

    def __init__(
        self, form: Form, file_fields: set[str], max_file_bytes: int, too_large: Callable
    ) -> None:
        self.form = form
        self.file_fields = file_fields
        self.max_file_bytes = max_file_bytes
        self.too_large = too_large
        self.parts = 0
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.buffer = bytearray()
        self.upload: UploadedFile | None = None
        self.handle: BinaryIO | None = None
        self.digest = hashlib.sha256()

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError(400, f"too many form parts (max {MAX_PARTS})", "invalid_request")
        self.headers, self.buffer, self.upload = {}, bytearray(), None
        self.header_field = self.header_value = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is None and self.name not in self.file_fields:
            return
        if len(self.form.files) >= MAX_FILES:
            raise ApiError(400, f"too many files (max {MAX_FILES})", "invalid_request")
        content_type = self.headers.get(b"content-type", b"").decode("latin-1") or None
        path = self.form.directory / f"part-{self.parts}"
        self.upload = UploadedFile(
            field=self.name,
            filename=filename.decode("utf-8", "replace") if filename is not None else None,
            content_type=content_type,
            path=path,
        )
        self.handle = path.open("wb")
        self.digest = hashlib.sha256()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.upload is None:
            self.buffer += chunk
            if len(self.buffer) > MAX_FIELD_BYTES:
                raise ApiError(
                    413,
                    f"form field '{self.name}' exceeds {MAX_FIELD_BYTES} bytes",
                    "invalid_request",
                )
            return
        self.upload.size += len(chunk)
        if self.upload.size > self.max_file_bytes:
            raise self.too_large(self.upload)
        assert self.handle is not None
        self.handle.write(chunk)
        self.digest.update(chunk)

    def on_part_end(self) -> None:
        if self.upload is None:
            value = bytes(self.buffer).decode("utf-8", "replace")
            self.form.fields.append((self.name, value))
            return
        assert self.handle is not None
        self.handle.close()
        self.handle = None
        self.upload.sha256 = self.digest.hexdigest()
        self.form.files.append(self.upload)
        self.upload = None

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def default_too_large(max_bytes: int) -> Callable[[UploadedFile], ApiError]:
    def build(upload: UploadedFile) -> ApiError:
        return ApiError(
            413,
            f"file '{upload.field}' exceeds the upload limit of {max_bytes} bytes",
            "generation_input_validation_failed",
        )

    return build


async def read_form(
    request: Request,
    scratch: Path,
    file_fields: set[str],
    max_file_bytes: int,
    too_large: Callable[[UploadedFile], ApiError] | None = None,
) -> Form:
    """Parse the body; the caller must `cleanup()` the returned form. Raises ApiError."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(400, "expected multipart/form-data with a boundary", "invalid_request")
    too_large = too_large or default_too_large(max_file_bytes)
    _check_declared_length(request, max_file_bytes, too_large)
    scratch.mkdir(parents=True, exist_ok=True)
    form = Form(directory=Path(tempfile.mkdtemp(prefix="upload-", dir=scratch)))
    state = _State(form, file_fields, max_file_bytes, too_large)
    callbacks = {
        name: getattr(state, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        stream = request.stream()
        async for chunk in stream:
            try:
                parser.write(chunk)
            except ApiError:
                await _drain(stream)
                raise
        parser.finalize()
    except MultipartParseError as exc:
        form.cleanup()
        raise ApiError(400, f"malformed multipart body: {exc}", "invalid_request") from exc
    except BaseException:
        form.cleanup()
        raise
    finally:
        state.close()
    return form


def _check_declared_length(request: Request, max_file_bytes: int, too_large: Callable) -> None:
    declared = request.headers.get("content-length")
    budget = max_file_bytes * MAX_FILES + MAX_FIELD_BYTES * 4
    if declared and declared.isdigit() and int(declared) > budget:
        raise too_large(UploadedFile(field="body", filename=None, content_type=None, path=Path()))


async def _drain(stream: AsyncIterator[bytes]) -> None:
    """Consume the rest of the upload (bounded) so the client reads our error, not a reset."""
    drained = 0
    async for chunk in stream:
        drained += len(chunk)
        if drained > DRAIN_LIMIT:
            break
