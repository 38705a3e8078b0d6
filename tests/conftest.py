"""Shared test fixtures: the real media of ../shared/media and scratch space."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MEDIA = (REPO.parent / "shared" / "media").resolve()


def media_path(relative: str) -> Path:
    """A file of ../shared/media, or a skip with the reason when the folder is absent."""
    path = MEDIA / relative
    if not path.exists():
        pytest.skip(f"shared media not found: {path} (clone ../shared beside the repo)")
    return path


@pytest.fixture
def grid_video() -> Path:
    return media_path("video/grid_bbaf2n.mpg")


@pytest.fixture
def speech_wav() -> Path:
    return media_path("speech/librivox_austen_0870.wav")
