"""The lip-sync engine: the only entry point the job worker and the CLI call.

`generate` takes paths and plain options and returns plain results; the stages behind it
(media I/O, face tracking, audio to mouth motion, rendering, encoding) are internal.
"""

from openlipsync.engine.errors import EngineError
from openlipsync.engine.request import GenerateRequest, GenerateResult, ProgressCallback

__all__ = ["EngineError", "GenerateRequest", "GenerateResult", "ProgressCallback", "generate"]


def generate(request: GenerateRequest, progress=None, should_cancel=None) -> GenerateResult:
    """Lip-sync `request.video` to `request.audio` into `request.output` (an MP4)."""
    from openlipsync.engine.pipeline import run

    return run(request, progress=progress, should_cancel=should_cancel)
