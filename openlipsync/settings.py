"""One typed settings object for every process (API, worker, CLI).

Every field can be set from the environment with the ``OPENLIPSYNC_`` prefix, so an API node and a
worker started with the same environment cooperate without any other configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PRICES_PER_FRAME: dict[str, float] = {
    "lipsync-1.9.0-beta": 0.0008,
    "lipsync-2": 0.0016,
    "lipsync-2-pro": 0.00268,
    "react-1": 0.0016,
    "sync-3": 0.00428,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENLIPSYNC_", extra="ignore")

    data_dir: Path = Field(default=Path("~/.openlipsync").expanduser())
    # Empty means "derive from data_dir" (embedded SQLite database and broker).
    database_url: str = ""
    broker_url: str = ""
    # Empty: a directory under data_dir; "s3://bucket/prefix": S3-compatible storage.
    storage_url: str = ""
    s3_endpoint_url: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    signing_secret: str = ""

    max_upload_bytes: int = 512 * 1024 * 1024
    max_input_seconds: float = 30 * 60
    fetch_timeout_seconds: float = 30.0
    fetch_max_bytes: int = 2 * 1024 * 1024 * 1024
    allow_private_urls: bool = False

    rate_limit_generate_per_minute: int = 60
    rate_limit_other_per_minute: int = 600
    concurrency_limit: int = 6
    batch_min_lines: int = 20
    batch_max_lines: int = 500
    batch_max_bytes: int = 5 * 1024 * 1024
    batch_concurrency_limit: int = 5  # batches PENDING..PROCESSING per organisation
    max_json_body_bytes: int = 2 * 1024 * 1024

    webhook_max_attempts: int = 5
    webhook_timeout_seconds: float = 10.0
    webhook_backoff_seconds: float = 5.0  # first retry delay; doubles per attempt

    # Jobs (openlipsync.jobs): Redis keys get this prefix so several deployments share a server.
    broker_key_prefix: str = "openlipsync:"
    broker_polling_seconds: float = 0.5  # SQLite broker only
    job_max_attempts: int = 3  # a generation that kills its worker this often ends FAILED
    # The engine worker runs this much nicer (os.nice) than the API and the service worker: on a
    # machine that runs them all (`serve`), requests, webhooks and the reaper stay prompt while
    # the engine takes every cycle left. 0 keeps one priority for all.
    engine_niceness: int = Field(default=10, ge=0, le=19)
    job_heartbeat_seconds: float = 5.0
    job_stale_seconds: float = 60.0  # PROCESSING without a heartbeat this long is orphaned
    job_requeue_seconds: float = 1800.0  # re-send a still-queued PENDING message after this
    generation_timeout_seconds: float = 3600.0
    reaper_interval_seconds: float = 15.0
    # Long videos in parallel: outputs lasting at least `chunk_min_seconds` are planned once and
    # rendered as chunks of about `chunk_seconds` on whatever engine workers are free, then
    # joined without re-encoding. 0 turns chunking off. Shorter outputs are rendered by one
    # task in one pass, as before.
    chunk_seconds: float = 30.0
    chunk_min_seconds: float = 120.0
    retention_seconds: float = 30 * 24 * 3600.0  # outputs and results files; 0 keeps forever
    output_url_ttl_seconds: int = 7 * 24 * 3600
    prices_per_frame: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES_PER_FRAME)
    )

    elevenlabs_api_key: str = ""
    elevenlabs_base_url: str = "https://api.elevenlabs.io"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'openlipsync.db'}"

    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
