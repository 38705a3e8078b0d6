"""The application factory: one FastAPI app per settings object, shared state on `app.state`."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from openlipsync import __version__
from openlipsync.api.enqueue import DispatchEnqueue, Enqueue
from openlipsync.api.errors import install_error_handlers
from openlipsync.api.guards import RejectNulMiddleware
from openlipsync.api.routes import (
    assets,
    batches,
    estimates,
    files,
    generations,
    health,
    metrics,
    models,
    voices,
)
from openlipsync.api.schemas import GenerateBody, RegisterAsset, UploadRequest
from openlipsync.logs import adopt_server_loggers, configure_logging
from openlipsync.settings import Settings, get_settings
from openlipsync.store.db import open_database
from openlipsync.store.files import open_storage
from openlipsync.web.mount import mount_studio

DESCRIPTION = (
    "Self-hosted lip-sync service speaking the sync.so v2 REST API. Authenticate with the "
    "`x-api-key` header. Point the official SDKs at this server's base URL (without `/v2`)."
)


def create_app(settings: Settings | None = None, enqueue: Enqueue | None = None) -> FastAPI:
    """Build the API. `enqueue` defaults to the Celery dispatcher of `openlipsync.jobs`."""
    settings = settings or get_settings()
    configure_logging()  # OPENLIPSYNC_LOG_FORMAT=json: one JSON object per line
    app = FastAPI(
        title="openlipsync",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.sessions = open_database(settings)
    app.state.storage = open_storage(settings)
    app.state.enqueue = enqueue or DispatchEnqueue(settings)
    install_error_handlers(app)
    app.add_middleware(RejectNulMiddleware)
    for module in (health, metrics, generations, estimates, assets, batches, models, files, voices):
        app.include_router(module.router)
    # uvicorn installs its own log handlers after this factory returns; re-format them then.
    app.router.on_startup.append(adopt_server_loggers)

    mount_studio(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    @app.get("/api-json", include_in_schema=False)
    def api_json() -> JSONResponse:
        # The official MCP server reads the OpenAPI document from here (NestJS convention).
        return JSONResponse(app.openapi())

    return app


KEYLESS_PREFIXES = ("/v2/files/", "/v2/uploads/", "/v2/health")

# Request bodies are parsed by hand (JSON and multipart share one path), so their schemas are
# registered here for the documentation instead of being inferred from handler signatures.
_REQUEST_SCHEMAS: tuple[type[BaseModel], ...] = (GenerateBody, UploadRequest, RegisterAsset)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for model in _REQUEST_SCHEMAS:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        _replace_validation_responses(document)
        document["components"]["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
        }
        document["security"] = [{"ApiKey": []}]
        app.openapi_schema = document
    return app.openapi_schema


def _replace_validation_responses(document: dict[str, Any]) -> None:
    """FastAPI documents 422 for parameter errors; this API answers them with the 400 body."""
    schemas = document["components"]["schemas"]
    for path in document.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            documented = json.dumps(responses.get("422", {}))
            if "HTTPValidationError" not in documented:
                continue
            responses.pop("422")
            if "400" not in responses:
                responses["400"] = {
                    "description": "Bad Request",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    },
                }
    error = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    }
    for route, path in document.get("paths", {}).items():
        if not route.startswith("/v2/") or route.startswith(KEYLESS_PREFIXES):
            continue
        for method, operation in path.items():
            responses = operation.setdefault("responses", {})
            # Every authenticated route is rate limited; every body is size limited.
            responses.setdefault("429", {"description": "Too Many Requests", **error})
            # The database is restarting or unreachable: nothing was done, retry after
            # Retry-After (errorCode generation_database_error).
            responses.setdefault("503", {"description": "Service Unavailable", **error})
            if method in ("post", "put"):
                responses.setdefault("413", {"description": "Payload Too Large", **error})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
