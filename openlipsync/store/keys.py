"""API keys: shown once in plaintext, stored only as a SHA-256 digest.

A SHA-256 of a 256-bit random token is enough (no slow KDF needed): the secret is not guessable,
and a fast hash keeps authentication to one indexed lookup per request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlipsync.store.models import ApiKey, Organization

KEY_PREFIX = "sk-ols-"
_LAST_USED_RESOLUTION = timedelta(minutes=1)  # avoid a write on every authenticated request


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(
    session: Session, name: str, organization_id: str | None = None
) -> tuple[str, ApiKey]:
    """Create a key (and a new organisation when none is given); commits."""
    if organization_id is None:
        organization = Organization(name=name, webhook_secret="whsec_" + secrets.token_hex(24))
        session.add(organization)
        session.flush()
        organization_id = organization.id
    elif session.get(Organization, organization_id) is None:
        raise ValueError(f"organization not found: {organization_id}")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        organization_id=organization_id,
        name=name,
        prefix=plaintext[: len(KEY_PREFIX) + 4],
        key_hash=hash_key(plaintext),
    )
    session.add(key)
    session.commit()
    return plaintext, key


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str) -> bool:
    """Revoke by id (or by the displayed prefix); False when no active key matches."""
    key = session.get(ApiKey, key_id)
    if key is None:
        key = session.scalars(select(ApiKey).where(ApiKey.prefix == key_id)).first()
    if key is None or key.revoked_at is not None:
        return False
    key.revoked_at = datetime.now(UTC)
    session.commit()
    return True


def authenticate(session: Session, plaintext: str | None) -> ApiKey | None:
    """The active key matching the plaintext, or None."""
    if not plaintext or len(plaintext) > 512:
        return None
    key = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext))).first()
    if key is None or key.revoked_at is not None:
        return None
    now = datetime.now(UTC)
    last = _aware(key.last_used_at)
    if last is None or now - last > _LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.commit()
    return key


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes even for timezone=True columns; they were stored as UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
