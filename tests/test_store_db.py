"""The database layer: migrations match the models, concurrent starts, keys, file storage."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
import test_api_support as support
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from openlipsync.settings import Settings
from openlipsync.store.db import open_database
from openlipsync.store.files import LocalStorage, StorageKeyError, open_storage, signing_secret
from openlipsync.store.keys import authenticate, create_key, list_keys, revoke_key
from openlipsync.store.models import Base

database_url = support.database_url  # fixture


def _settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


def test_migrations_reach_head_and_match_the_models(tmp_path: Path, database_url: str) -> None:
    sessions = open_database(_settings(tmp_path, database_url))
    engine = sessions.kw["bind"]
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], f"models and migrations differ; add a revision: {diff}"
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version is not None
    tables = set(inspect(engine).get_table_names())
    assert {"generations", "assets", "batches", "api_keys", "rate_limit_windows"} <= tables
    assert open_database(_settings(tmp_path, database_url)) is sessions  # cached per URL
    if not database_url:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def _open_in_child(data_dir: str, url: str) -> None:
    sessions = open_database(Settings(data_dir=Path(data_dir), database_url=url))
    with sessions() as session:
        session.execute(text("SELECT count(*) FROM generations"))


def test_concurrent_first_start_migrates_once(tmp_path: Path) -> None:
    """Several processes opening a fresh SQLite database at once must not race on DDL."""
    context = multiprocessing.get_context("fork")  # children build their own engines (per pid)
    children = [
        context.Process(target=_open_in_child, args=(str(tmp_path / "shared"), ""))
        for _ in range(3)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0, 0]


def test_keys_lifecycle(tmp_path: Path, database_url: str) -> None:
    sessions = open_database(_settings(tmp_path, database_url))
    with sessions() as session:
        plaintext, key = create_key(session, "ci")
        assert plaintext.startswith("sk-ols-") and len(plaintext) > 40
        assert plaintext not in key.key_hash and len(key.key_hash) == 64
        second, sibling = create_key(session, "ci-2", organization_id=key.organization_id)
        assert sibling.organization_id == key.organization_id
        third, stranger = create_key(session, "other")
        assert stranger.organization_id != key.organization_id
        with pytest.raises(ValueError):
            create_key(session, "x", organization_id="missing-org")
        assert authenticate(session, plaintext).id == key.id
        assert authenticate(session, plaintext + "x") is None
        assert authenticate(session, "") is None and authenticate(session, None) is None
        assert {k.id for k in list_keys(session)} >= {key.id, sibling.id, stranger.id}
        assert revoke_key(session, key.id) is True
        assert revoke_key(session, key.id) is False
        assert revoke_key(session, "no-such-key") is False
        assert authenticate(session, plaintext) is None
        assert authenticate(session, second).id == sibling.id


def test_local_storage_roundtrip_and_signatures(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_base_url="http://files.example/base/")
    storage = open_storage(settings)
    assert isinstance(storage, LocalStorage)
    source = tmp_path / "in.bin"
    source.write_bytes(b"x" * 1000)
    assert storage.put_file("a/b/c.mp4", source) == 1000
    assert storage.put_bytes("a/d.txt", b"hello") == 5
    assert storage.exists("a/b/c.mp4") and storage.size("a/d.txt") == 5
    out = storage.download("a/b/c.mp4", tmp_path / "out" / "c.mp4")
    assert out.read_bytes() == source.read_bytes()
    assert storage.download("a/d.txt", tmp_path).name == "d.txt"
    with pytest.raises(FileNotFoundError):
        storage.download("missing", tmp_path / "m")

    url = storage.signed_url("a/b/c.mp4", 60, filename="c.mp4")
    assert url.startswith("http://files.example/base/v2/files/a/b/c.mp4?")
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    assert storage.verify("GET", "a/b/c.mp4", query["exp"], query["sig"], "c.mp4")
    assert not storage.verify("GET", "a/b/c.mp4", query["exp"], query["sig"], "other.mp4")
    assert not storage.verify("PUT", "a/b/c.mp4", query["exp"], query["sig"], "c.mp4")
    assert not storage.verify("GET", "a/d.txt", query["exp"], query["sig"], "c.mp4")
    assert not storage.verify("GET", "a/b/c.mp4", str(int(time.time()) - 1), query["sig"], "c.mp4")
    assert not storage.verify("GET", "a/b/c.mp4", "soon", query["sig"], "c.mp4")

    for hostile in ("../x", "/etc/passwd", "a/../../x", "", "a\\b", "a/./b", "a//b", "a\x00b"):
        with pytest.raises(StorageKeyError):
            storage.path(hostile)
    storage.delete("a/d.txt")
    storage.delete("a/d.txt")  # idempotent
    assert not storage.exists("a/d.txt")


def test_signing_secret_is_generated_once_and_shared(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = signing_secret(settings)
    assert len(first) == 64 and signing_secret(settings) == first
    assert signing_secret(Settings(data_dir=tmp_path, signing_secret="abc")) == b"abc"
