"""`GET /v2/voices`: the voices this server speaks for `type: "text"` inputs.

An extension of the hosted API (which lists account voices there): the local Piper voices,
usable offline and free as `provider.voiceId`; the wire shape of text inputs is unchanged
(`provider.name` stays "elevenlabs", and a local voice id is spoken locally).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from openlipsync.api import schemas
from openlipsync.api.deps import Caller, current_caller
from openlipsync.tts.registry import list_voices

router = APIRouter(tags=["voices"])


@router.get(
    "/v2/voices",
    summary="List the local text-to-speech voices",
    responses={**schemas.errors(401)},
)
def get_voices(request: Request, _caller: Caller = Depends(current_caller)) -> JSONResponse:
    return JSONResponse(list_voices(request.app.state.settings))
