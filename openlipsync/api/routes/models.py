"""The five model ids of the hosted API, each mapped honestly onto a local engine preset."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from openlipsync.api import schemas
from openlipsync.api.deps import Caller, current_caller

router = APIRouter(tags=["models"])

_NAMESPACE = uuid.UUID("3f1c6d2e-8c1a-4d8e-9a53-6f0b1c2d3e4f")

MODELS: list[tuple[str, str, str, str]] = [
    (
        "sync-3",
        "lipsync",
        "3.0.0",
        "Local engine, standard preset; also accepts a still photo (image input) animated by "
        "the audio. Not the hosted sync-3 network.",
    ),
    (
        "lipsync-2-pro",
        "lipsync",
        "2.0.0",
        "Local engine, pro quality preset: denser face tracking and finer mouth compositing; "
        "slowest. Not the hosted diffusion super-resolution model.",
    ),
    (
        "lipsync-2",
        "lipsync",
        "2.0.0",
        "Local engine, standard preset: the default speed/quality balance on the CPU.",
    ),
    (
        "lipsync-1.9.0-beta",
        "lipsync",
        "1.9.0",
        "Local engine, fast preset: lighter tracking and blending for quick previews.",
    ),
    (
        "react-1",
        "react",
        "1.0.0",
        "Local engine, standard preset with options.prompt (emotion) and options.model_mode "
        "(lips/face/head) applied to the mouth and face motion.",
    ),
]


def model_list() -> list[dict[str, str | None]]:
    return [
        {
            "id": str(uuid.uuid5(_NAMESPACE, name)),
            "name": name,
            "type": kind,
            "version": version,
            "description": description,
            "deprecatedAt": None,
        }
        for name, kind, version, description in MODELS
    ]


@router.get(
    "/v2/models",
    summary="List available models",
    responses={200: {"model": list[schemas.ModelOut]}, **schemas.errors(401)},
)
def list_models(_caller: Caller = Depends(current_caller)) -> JSONResponse:
    return JSONResponse(model_list())
