"""Request-scoped dependencies: a database session and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from openlipsync.api import limits
from openlipsync.api.errors import ApiError
from openlipsync.settings import Settings
from openlipsync.store.files import Storage
from openlipsync.store.keys import authenticate


@dataclass(frozen=True)
class Caller:
    key_id: str
    organization_id: str


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def _caller(request: Request, session: Session, generate: bool) -> Caller:
    key = authenticate(session, request.headers.get("x-api-key"))
    if key is None:
        raise ApiError(
            401,
            "Unauthorized: missing or invalid x-api-key header",
            "unauthorized",
        )
    settings: Settings = request.app.state.settings
    if generate:
        limits.hit(session, f"gen:{key.id}", settings.rate_limit_generate_per_minute)
    else:
        limits.hit(session, f"any:{key.id}", settings.rate_limit_other_per_minute)
    return Caller(key_id=key.id, organization_id=key.organization_id)


def current_caller(request: Request, session: Session = Depends(get_session)) -> Caller:
    """Authenticated caller counted against the general (600/min) limit."""
    return _caller(request, session, generate=False)


def generating_caller(request: Request, session: Session = Depends(get_session)) -> Caller:
    """Authenticated caller counted against the POST /v2/generate (60/min) limit."""
    return _caller(request, session, generate=True)
