"""The newer cost estimator (spec §4.4): model + duration + fps, no media involved.

SDK 0.3.0 uses `POST /v2/analyze/cost` (in generations.py); this pair serves docs/curl users.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from openlipsync.api import schemas
from openlipsync.api.deps import Caller, current_caller
from openlipsync.api.errors import bad_request
from openlipsync.api.routes.generations import read_json
from openlipsync.api.validation import MODELS, Problems, as_bool, is_number

router = APIRouter(tags=["generations"])

DEFAULT_FPS = 30.0
MAX_FPS = 240.0

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model", "duration"],
                    "properties": {
                        "model": {"type": "string", "enum": list(MODELS)},
                        "duration": {"type": "number", "exclusiveMinimum": 0},
                        "fps": {"type": "number", "exclusiveMinimum": 0, "default": 30},
                        "reasoningEnabled": {"type": "boolean"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/v2/generations/estimate",
    summary="Estimate frames and cost from a duration (nothing is fetched or created)",
    responses={200: {"model": schemas.EstimateOut}, **schemas.errors(400, 401)},
    openapi_extra=_BODY,
)
@router.post("/v2/generate/estimate-cost", include_in_schema=False, openapi_extra=_BODY)
async def estimate(request: Request, _caller: Caller = Depends(current_caller)) -> JSONResponse:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    problems = Problems()
    model = body.get("model")
    if model not in MODELS:
        problems.add(f"model must be one of the following values: {', '.join(MODELS)}")
    duration = body.get("duration")
    max_seconds = request.app.state.settings.max_input_seconds
    if not is_number(duration) or not 0 < duration <= max_seconds:
        problems.add(f"duration must be a number of seconds in (0, {max_seconds:g}]")
    fps = DEFAULT_FPS if body.get("fps") is None else body["fps"]
    if not is_number(fps) or not 0 < fps <= MAX_FPS:
        problems.add(f"fps must be a number in (0, {MAX_FPS:g}]")
    if body.get("reasoningEnabled") is not None and as_bool(body["reasoningEnabled"]) is None:
        problems.add("reasoningEnabled must be a boolean")
    problems.raise_if_any()
    frames = int(round(duration * fps))
    price = request.app.state.settings.prices_per_frame.get(model, 0.0)
    return JSONResponse(
        {
            "estimatedFrameCount": frames,
            "estimatedGenerationCost": round(frames * price, 6),
            "estimatedCredits": None,
        }
    )
