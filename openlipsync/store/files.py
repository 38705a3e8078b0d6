"""File storage for uploads and outputs: a local directory, or any S3-compatible bucket.

Links handed to clients must work in a browser without the API key. S3 gives presigned URLs;
the local backend signs `(method, key, expiry, filename)` with HMAC-SHA256 and the API serves
`/v2/files/{key}` (GET) and `/v2/uploads/{key}` (PUT) after checking the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, urlencode, urlparse

from openlipsync.settings import Settings

FILES_ROUTE = "/v2/files/"
UPLOADS_ROUTE = "/v2/uploads/"
_EXPIRY_ROUNDING = 3600  # round expiries up to the hour so repeated GETs return the same URL


class StorageKeyError(ValueError):
    """A key that could escape the storage root or is otherwise unusable."""


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


class S3Storage:
    """S3/MinIO/R2 via boto3 (an optional dependency, imported only when configured)."""

    def __init__(self, url: str, endpoint_url: str | None) -> None:
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("s3:// storage needs boto3: pip install boto3") from exc
        parsed = urlparse(url)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        key = normalize_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, source: Path) -> int:
        self.client.upload_file(str(source), self.bucket, self._key(key))
        return Path(source).stat().st_size

    def put_bytes(self, key: str, data: bytes) -> int:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return len(data)

    def download(self, key: str, dest: Path) -> Path:
        if dest.is_dir():
            dest = dest / PurePosixPath(key).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, self._key(key), str(dest))
        return dest

    def signed_url(self, key: str, ttl_seconds: int, filename: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=int(ttl_seconds)
        )

    def upload_url(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if content_type:
            params["ContentType"] = content_type
        return self.client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=int(ttl_seconds)
        )

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception:  # botocore ClientError 404; boto3 types are optional here
            return None
        return int(head["ContentLength"])
