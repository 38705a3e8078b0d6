"""File storage for uploads and outputs: a local directory, or any S3-compatible bucket.

Links handed to clients must work in a browser without the API key. S3 gives presigned URLs;
the local backend signs `(method, key, expiry, filename)` with HMAC-SHA256 and the API serves
`/v2/files/{key}` (GET) and `/v2/uploads/{key}` (PUT) after checking the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import mimetypes
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, urlencode, urlparse

from openlipsync.settings import Settings

log = logging.getLogger(__name__)

FILES_ROUTE = "/v2/files/"
UPLOADS_ROUTE = "/v2/uploads/"
_EXPIRY_ROUNDING = 3600  # round expiries up to the hour so repeated GETs return the same URL


class StorageKeyError(ValueError):
    """A key that could escape the storage root or is otherwise unusable."""


class StorageError(OSError):
    """The backend itself failed (endpoint down, bucket missing, access denied, timeout).

    A missing *object* is `FileNotFoundError` on every backend; this is for everything else, so a
    worker can tell "the input expired" from "storage is broken" (`generation_storage_error`).
    """


@runtime_checkable
class Storage(Protocol):
    def put_file(self, key: str, source: Path) -> int: ...
    def put_bytes(self, key: str, data: bytes) -> int: ...
    def download(self, key: str, dest: Path) -> Path: ...
    def signed_url(self, key: str, ttl_seconds: int, filename: str | None = None) -> str: ...
    def upload_url(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def keys(self, prefix: str) -> list[str]: ...


def discard(storage: Storage, keys: Iterable[str | None]) -> None:
    """Delete leftovers, best effort: a key that will not go is logged, never raised, because
    the work that left it is settled either way (an orphan file is harmless)."""
    for key in keys:
        if not key:
            continue
        try:
            storage.delete(key)
        except Exception as exc:
            log.warning("could not delete %s: %s", key, exc)


def open_storage(settings: Settings) -> Storage:
    url = settings.storage_url.strip()
    if url.startswith("s3://"):
        return S3Storage(url, settings.s3_endpoint_url or None)
    if url.startswith("file://"):
        root = Path(urlparse(url).path)
    elif url:
        root = Path(url).expanduser()
    else:
        root = settings.data_dir / "files"
    return LocalStorage(root, settings.public_base_url, signing_secret(settings))


def signing_secret(settings: Settings) -> bytes:
    """The configured secret, else one generated once and kept in data_dir (shared by nodes)."""
    if settings.signing_secret:
        return settings.signing_secret.encode()
    path = settings.data_dir / "signing.key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            data = path.read_bytes().strip()
            if data:
                return data
            time.sleep(0.02)
        raise RuntimeError(f"empty signing key file: {path}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def normalize_key(key: str) -> str:
    """Reject keys that are absolute, empty or contain `..` (path traversal)."""
    if not key or "\x00" in key or "\\" in key or key.startswith("/"):
        raise StorageKeyError(f"invalid storage key: {key!r}")
    parts = key.split("/")
    if any(part in ("..", ".", "") for part in parts) or len(key) > 1024:
        raise StorageKeyError(f"invalid storage key: {key!r}")
    return key


def _expiry(ttl_seconds: int) -> int:
    raw = int(time.time()) + max(1, int(ttl_seconds))
    return -(-raw // _EXPIRY_ROUNDING) * _EXPIRY_ROUNDING


class LocalStorage:
    def __init__(self, root: Path, public_base_url: str, secret: bytes) -> None:
        self.root = root.expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.public_base_url = public_base_url.rstrip("/")
        self._secret = secret

    def path(self, key: str) -> Path:
        return self.root / normalize_key(key)

    def put_file(self, key: str, source: Path) -> int:
        with open(source, "rb") as handle:
            return self._write(key, lambda out: shutil.copyfileobj(handle, out, 1 << 20))

    def put_bytes(self, key: str, data: bytes) -> int:
        return self._write(key, lambda out: out.write(data))

    def _write(self, key: str, writer: Any) -> int:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target then rename: readers never see a half-written file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                writer(out)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target.stat().st_size

    def download(self, key: str, dest: Path) -> Path:
        source = self.path(key)
        if not source.is_file():
            raise FileNotFoundError(key)
        if dest.is_dir():
            dest = dest / source.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        return dest

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.is_file() else None

    def keys(self, prefix: str) -> list[str]:
        """Every object under the folder `prefix`, half-written `.part-` files included."""
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in folder.rglob("*") if p.is_file())

    def signed_url(self, key: str, ttl_seconds: int, filename: str | None = None) -> str:
        key = normalize_key(key)
        exp = _expiry(ttl_seconds)
        query = {"exp": str(exp), "sig": self._sign("GET", key, exp, filename or "")}
        if filename:
            query["filename"] = filename
        return f"{self.public_base_url}{FILES_ROUTE}{quote(key)}?{urlencode(query)}"

    def upload_url(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str:
        key = normalize_key(key)
        exp = int(time.time()) + max(1, int(ttl_seconds))
        query = {"exp": str(exp), "sig": self._sign("PUT", key, exp, "")}
        return f"{self.public_base_url}{UPLOADS_ROUTE}{quote(key)}?{urlencode(query)}"

    def verify(self, method: str, key: str, exp: str, sig: str, filename: str = "") -> bool:
        """True when the link was signed by us for this method/key and has not expired."""
        try:
            expiry = int(exp)
            key = normalize_key(key)
        except (TypeError, ValueError):
            return False
        if expiry < time.time():
            return False
        return hmac.compare_digest(self._sign(method, key, expiry, filename), sig or "")

    def _sign(self, method: str, key: str, exp: int, filename: str) -> str:
        message = f"{method}\n{key}\n{exp}\n{filename}".encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


S3_MAX_TTL = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer than a week
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
_MiB = 1 << 20


def content_disposition(filename: str) -> str:
    """Same header the local backend's FileResponse sends (RFC 6266 / 5987 for non-ASCII)."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


def _content_type(key: str) -> str:
    # Stored with the object so presigned links play inline in a browser (video/mp4).
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class S3Storage:
    """S3/MinIO/R2 via boto3 (an optional dependency, imported only when configured).

    Every call is bounded: connect/read timeouts and a small retry budget, so a dead endpoint
    surfaces as `StorageError` within seconds instead of hanging an API request or a worker.
    """

    def __init__(
        self,
        url: str,
        endpoint_url: str | None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("s3:// storage needs boto3: pip install boto3") from exc
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"storage_url must look like s3://bucket/prefix, got {url!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint_url = endpoint_url or None
        session = boto3.session.Session()  # the default session is not thread-safe to share
        config = Config(
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            # MinIO & co. serve buckets as paths; virtual hosts need wildcard DNS they lack.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
        )
        self.client = session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=session.region_name or "us-east-1",
            config=config,
        )
        # Files above 8 MiB go up/down in 8 MiB parts, streamed from/to disk; downloads buffer
        # at most 16 x 256 KiB awaiting the disk (s3transfer's default allows 25 MiB).
        self.transfer = TransferConfig(
            multipart_threshold=8 * _MiB,
            multipart_chunksize=8 * _MiB,
            max_concurrency=4,
            max_io_queue=16,
        )

    def _key(self, key: str) -> str:
        key = normalize_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str = "") -> str:
        path = "/".join(part for part in (self.prefix, key) if part)
        return f"s3://{self.bucket}/{path}"

    def put_file(self, key: str, source: Path) -> int:
        extra = {"ContentType": _content_type(key)}
        with self._errors(key):
            self.client.upload_file(
                str(source), self.bucket, self._key(key), ExtraArgs=extra, Config=self.transfer
            )
        return Path(source).stat().st_size

    def put_bytes(self, key: str, data: bytes) -> int:
        with self._errors(key):
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=_content_type(key)
            )
        return len(data)

    def download(self, key: str, dest: Path) -> Path:
        name = self._key(key)
        if dest.is_dir():
            dest = dest / PurePosixPath(key).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        # s3transfer writes to a temporary name and renames: no half-written `dest` on failure.
        with self._errors(key):
            self.client.download_file(self.bucket, name, str(dest), Config=self.transfer)
        return dest

    def signed_url(self, key: str, ttl_seconds: int, filename: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        return self._presign("get_object", key, params, ttl_seconds)

    def upload_url(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if content_type:
            params["ContentType"] = content_type  # signed: the PUT must send this exact type
        return self._presign("put_object", key, params, ttl_seconds)

    def _presign(self, operation: str, key: str, params: dict[str, Any], ttl_seconds: int) -> str:
        ttl = min(max(1, int(ttl_seconds)), S3_MAX_TTL)
        with self._errors(key):
            return str(self.client.generate_presigned_url(operation, Params=params, ExpiresIn=ttl))

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        try:
            with self._errors(key):
                head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError:
            return None
        return int(head["ContentLength"])

    def keys(self, prefix: str) -> list[str]:
        """Every object under the folder `prefix` (listed a page of 1000 at a time)."""
        folder = self._key(prefix).rstrip("/") + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[str] = []
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=folder):
                found += [item["Key"][strip:] for item in page.get("Contents", [])]
        return sorted(found)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate botocore's exceptions into FileNotFoundError / StorageError."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, key) from exc
        except Boto3Error as exc:  # S3UploadFailedError wraps the ClientError as its context
            cause = exc.__context__
            if isinstance(cause, ClientError):
                raise self._client_error(cause, key) from exc
            raise StorageError(f"{self._where(key)}: {exc}") from exc
        except BotoCoreError as exc:  # connection refused, timeouts, missing credentials
            where = self.endpoint_url or "the S3 endpoint"
            raise StorageError(f"{self._where(key)}: cannot reach {where}: {exc}") from exc

    def _client_error(self, exc: Any, key: str) -> OSError:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return StorageError(f"bucket {self.bucket!r} does not exist")
        if code in _NOT_FOUND:
            # HEAD answers a bare 404 for a missing bucket too: tell the two apart.
            if not self._bucket_exists():
                return StorageError(f"bucket {self.bucket!r} does not exist")
            return FileNotFoundError(f"{self._where(key)} does not exist")
        return StorageError(f"{self._where(key)}: {code or 'error'}: {exc}")

    def _bucket_exists(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            return code not in ("404", "NoSuchBucket", "NotFound")
        except BotoCoreError:
            return True  # unknown: keep reporting the object as missing
        return True
