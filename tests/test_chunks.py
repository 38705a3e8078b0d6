"""Long videos in parallel, in one process: the engine's plan / chunk / join path against the
single pass, and the job logic (claims, re-delivery, a dead chunk worker, a failing chunk) on
the embedded SQLite database with local storage. Real media, real encoder; task functions are
called directly instead of through a broker (tests/test_scale_chunks.py runs real workers)."""

from __future__ import annotations

import hashlib
import mmap
import shutil
from datetime import timedelta
from pathlib import Path

import av
import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.chunks import (
    PlanUnusable,
    chunk_bounds,
    join,
    load_plan,
    render_chunk,
    track_path,
    write_plan,
)
from openlipsync.engine.pipeline import planned
from openlipsync.engine.run_state import RunState
from openlipsync.jobs import reaper
from openlipsync.jobs.celery_app import configure
from openlipsync.jobs.chunks import (
    CHUNK_STAGE,
    JOIN_STAGE,
    chunk_key,
    run_chunk,
    run_join,
    wanted,
)
from openlipsync.jobs.context import sessions as job_sessions
from openlipsync.jobs.generation import run_generation
from openlipsync.media.video import FrameSource
from openlipsync.settings import Settings
from openlipsync.store.files import open_storage
from openlipsync.store.models import (
    Asset,
    Generation,
    GenerationChunk,
    WebhookDelivery,
    utcnow,
)
from tests.conftest import media_path
from tests.test_jobs_helpers import add_generation, job_settings, load, new_organization, open_db

# Two encodes of the same pictures differ only where the encoder's decisions do (a chunk
# restarts its GOP): measured 40.5-42 dB at CRF 18; below 38 dB something else changed.
PSNR_FLOOR = 38.0


def _request(tmp: Path, name: str = "single.mp4", **overrides: object) -> GenerateRequest:
    values: dict = {
        "video": media_path("video/grid_bbaf2n.mpg"),
        "audio": media_path("speech/arctic_a0009.wav"),
        "output": tmp / name,
        "sync_mode": "cut_off",
        "model": "lipsync-2",
    }
    values.update(overrides)
    return GenerateRequest(**values)


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_chunk_bounds_cover_every_frame_once() -> None:
    assert chunk_bounds(75, 25.0, 1.0) == [(0, 25), (25, 50), (50, 75)]
    assert chunk_bounds(80, 25.0, 1.0) == [(0, 25), (25, 50), (50, 80)]  # 5 frames: merged
    assert chunk_bounds(90, 25.0, 1.0) == [(0, 25), (25, 50), (50, 75), (75, 90)]
    assert chunk_bounds(10, 25.0, 30.0) == [(0, 10)]


@pytest.fixture(scope="module")
def chunked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One single-pass output and the same request planned, rendered in 3 chunks and joined."""
    tmp = tmp_path_factory.mktemp("chunked")
    request = _request(tmp)
    single = generate(request)
    plan_path = tmp / "plan.npz"
    summary = write_plan(_request(tmp, "unused.mp4"), plan_path)
    plan = load_plan(plan_path)
    bounds = chunk_bounds(summary.frame_count, summary.fps, 1.0)
    parts = []
    for index, (start, stop) in enumerate(bounds):
        parts.append(tmp / f"chunk-{index}.mp4")
        assert render_chunk(plan, request.video, start, stop, parts[-1]) == stop - start
    joined = join(load_plan(plan_path, sound=True), parts, tmp / "joined.mp4")
    return {"tmp": tmp, "single": single, "joined": joined, "plan": plan, "parts": parts}


def test_chunks_get_the_plan_without_the_sound_and_with_packed_crops(chunked: dict) -> None:
    """Every chunk downloads the plan: the sound (only the join uses it) is a file of its own
    and the library crops are PNGs. A damaged crop is a clear plan error, not odd pixels."""
    plan_path = chunked["tmp"] / "plan.npz"
    with np.load(plan_path) as data:
        arrays = {name: data[name] for name in data.files}
    assert "audio" not in arrays and "renderer/library_crops" not in arrays
    assert "renderer/track_landmarks" not in arrays  # a file of its own, mapped by chunks
    base = chunked["plan"].look.source_track.landmarks
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, mmap.mmap)
    assert chunked["plan"].audio is None
    with pytest.raises(ValueError, match="sound"):
        join(chunked["plan"], chunked["parts"], chunked["tmp"] / "never.mp4")
    assert load_plan(plan_path, sound=True).audio.duration == pytest.approx(3.0, abs=0.03)

    blob = arrays["crops_png"].copy()
    blob[len(blob) // 2 : len(blob) // 2 + 64] ^= 0xFF
    damaged = chunked["tmp"] / "damaged.npz"
    with open(damaged, "wb") as handle:
        np.savez(handle, **{**arrays, "crops_png": blob})
    with pytest.raises(PlanUnusable, match="cannot be read"):
        load_plan(damaged)  # no track beside it
    shutil.copy(track_path(plan_path), track_path(damaged))
    with pytest.raises(PlanUnusable, match="crop"):
        load_plan(damaged)


def test_a_track_file_that_cannot_be_the_plans_is_a_plan_error(chunked: dict) -> None:
    plan_path = chunked["tmp"] / "plan.npz"
    track = np.load(track_path(plan_path))
    other = chunked["tmp"] / "other.npz"
    shutil.copy(plan_path, other)
    for wrong, message in [
        (track[:10], "frames"),  # shorter than the frames the plan shows
        (track[:, :68], "holds"),  # another landmark model
        (track.astype(np.float64), "holds"),
    ]:
        np.save(track_path(other), wrong)
        with pytest.raises(PlanUnusable, match=message):
            load_plan(other)
    track_path(other).write_bytes(b"not a track")
    with pytest.raises(PlanUnusable, match="cannot be read"):
        load_plan(other)
    np.save(track_path(other), track)
    assert np.array_equal(load_plan(other).look.source_track.landmarks, track, equal_nan=True)


def test_rendered_pixels_are_identical_whichever_process_draws_them(chunked: dict) -> None:
    """The plan file carries everything: frame i from the loaded plan == frame i in-process."""
    request, loaded = _request(chunked["tmp"], "again.mp4"), chunked["plan"]
    with planned(request, RunState()) as plan, FrameSource(request.video, fps=25.0) as source:
        assert plan.timeline.frame_count == loaded.summary.frame_count == 75
        for index in (0, 24, 25, 26, 49, 50, 74):  # around both borders and the ends
            frame = source.get(int(plan.look.src_index[index]))
            expected = plan.look.frame(index, frame.copy())
            assert np.array_equal(loaded.look.frame(index, frame.copy()), expected), index
            assert not np.array_equal(expected, frame), "the mouth was actually re-rendered"


def test_joined_output_matches_the_single_pass(chunked: dict) -> None:
    single, joined = chunked["single"], chunked["joined"]
    assert joined.frame_count == single.frame_count == 75
    assert joined.duration == single.duration == 3.0
    with av.open(str(joined.output)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and video.frames == 75
        assert float(video.duration * video.time_base) == pytest.approx(3.0, abs=1e-6)
        assert float(audio.duration * audio.time_base) == pytest.approx(3.0, abs=0.03)
        assert container.duration / 1e6 == pytest.approx(3.0, abs=0.03)
    a, b = _decoded(single.output), _decoded(joined.output)
    assert len(a) == len(b) == 75
    scores = [_psnr(x, y) for x, y in zip(a, b, strict=True)]
    assert min(scores) >= PSNR_FLOOR, scores
    # The first chunk is the same encode as the single pass's first second, but for its last
    # few frames: there x264 decides frame types without the frames after the border that the
    # single pass's lookahead sees (superfast: up to 3 B-frames), which may or may not agree.
    assert all(score == float("inf") for score in scores[: 25 - 4])


def test_a_chunk_rendered_twice_is_the_same_file(chunked: dict) -> None:
    again = chunked["tmp"] / "chunk-1-again.mp4"
    render_chunk(chunked["plan"], media_path("video/grid_bbaf2n.mpg"), 25, 50, again)
    assert _sha(again) == _sha(chunked["parts"][1])


def test_splitting_is_decided_by_the_expected_output_length(tmp_path: Path) -> None:
    short = _request(tmp_path)
    long = _request(tmp_path, audio=media_path("speech/jfk_inaugural.flac"), sync_mode="loop")
    defaults = Settings()
    assert defaults.chunk_seconds > 0 and not wanted(defaults, long, False)  # 11 s < 120 s
    on = Settings(chunk_seconds=4.0, chunk_min_seconds=10.0)
    assert wanted(on, long, False) and not wanted(on, short, False)
    assert not wanted(on, long, True), "synthesized speech stays single-pass"
    assert not wanted(Settings(chunk_seconds=0.0, chunk_min_seconds=0.0), long, False)


# -- the job logic ---------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = job_settings(
        tmp_path, job_stale_seconds=5.0, job_max_attempts=2, chunk_seconds=1.0, chunk_min_seconds=2
    )
    configure(settings)  # messages go to the embedded broker; nothing consumes them here
    sessions = open_db(settings)
    _key, org_id, _ = new_organization(sessions)
    storage = open_storage(settings)
    with sessions() as session:
        assets = []
        for kind, path in (
            ("VIDEO", "video/grid_bbaf2n.mpg"),
            ("AUDIO", "speech/arctic_a0009.wav"),
        ):
            key = f"assets/{kind.lower()}/{Path(path).name}"
            storage.put_file(key, media_path(path))
            assets.append(Asset(organization_id=org_id, type=kind, storage_key=key))
        session.add_all(assets)
        session.commit()
        inputs = [
            {"type": "video", "assetId": assets[0].id},
            {"type": "audio", "assetId": assets[1].id},
        ]
    return settings, sessions, storage, org_id, inputs


def _chunks(sessions, generation_id: str) -> list[GenerationChunk]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        rows = session.query(GenerationChunk).filter_by(generation_id=generation_id)
        return sorted(rows.all(), key=lambda c: c.index)


def test_a_chunked_generation_completes_once_and_redelivery_changes_nothing(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id, inputs = local
    generation_id = add_generation(
        sessions, org_id, input=inputs, webhook_url="http://127.0.0.1:9/hook"
    )
    assert run_generation(generation_id, sessions, storage, settings) is None  # handed off
    generation = load(sessions, generation_id)
    assert generation.status == "PROCESSING" and generation.stage == CHUNK_STAGE
    chunks = _chunks(sessions, generation_id)
    assert [(c.start_frame, c.stop_frame) for c in chunks] == [(0, 25), (25, 50), (50, 75)]
    assert {c.run for c in chunks} == {generation.worker_id}
    # Chunks waiting for a free worker leave the generation's heartbeat stale: a re-delivered
    # generate message must not plan it again.
    with sessions() as session:
        session.query(Generation).filter_by(id=generation_id).update(
            {"heartbeat_at": utcnow() - timedelta(seconds=60)}
        )
        session.commit()
    assert run_generation(generation_id, sessions, storage, settings) is None
    assert load(sessions, generation_id).worker_id == generation.worker_id
    assert len(_chunks(sessions, generation_id)) == 3

    for chunk in chunks:
        assert run_join(generation_id, sessions, storage, settings) is None  # not all done
        done = run_chunk(chunk.id, sessions, storage, settings)
        assert done is not None and done.status == "DONE"
    first = _chunks(sessions, generation_id)[0]
    before = _sha(storage.path(first.output_key))
    assert run_chunk(first.id, sessions, storage, settings) is None  # re-delivered: no-op
    work = storage.path(chunks[0].work_key)
    assert sorted(p.name for p in work.glob("chunk-*.mp4")) == [
        "chunk-0000.mp4",
        "chunk-0001.mp4",
        "chunk-0002.mp4",
    ]
    assert _sha(storage.path(first.output_key)) == before
    assert load(sessions, generation_id).progress == 100.0

    finished = run_join(generation_id, sessions, storage, settings)
    assert finished is not None and finished.status == "COMPLETED"
    assert run_join(generation_id, sessions, storage, settings) is None  # a duplicate join
    generation = load(sessions, generation_id)
    assert generation.status == "COMPLETED" and generation.output_duration == 3.0
    with av.open(str(storage.path(generation.output_key))) as container:
        assert container.streams.video[0].frames == 75
    outputs = list((storage.root / "generations" / generation_id).rglob("*.mp4"))
    assert outputs == [storage.path(generation.output_key)], "one output; chunk files removed"
    with sessions() as session:
        deliveries = session.query(WebhookDelivery).filter_by(generation_id=generation_id)
        assert deliveries.count() == 1


def _planned_and_rendered(local) -> tuple[str, list[GenerationChunk]]:  # type: ignore[no-untyped-def]
    """A chunked generation whose chunks all rendered; the join has not run."""
    settings, sessions, storage, org_id, inputs = local
    generation_id = add_generation(sessions, org_id, input=inputs)
    run_generation(generation_id, sessions, storage, settings)
    chunks = _chunks(sessions, generation_id)
    for chunk in chunks:
        run_chunk(chunk.id, sessions, storage, settings)
    return generation_id, chunks


def test_a_dead_chunk_worker_is_replaced_and_the_redo_is_the_same_file(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, *_ = local
    generation_id, chunks = _planned_and_rendered(local)
    victim = chunks[1]
    rendered = _sha(storage.path(chunk_key(victim.work_key, victim.index)))
    # Chunk 1 is found PROCESSING under a worker that stopped beating (killed mid-chunk).
    stale = utcnow() - timedelta(seconds=60)
    with sessions() as session:
        session.query(GenerationChunk).filter_by(id=victim.id).update(
            {"status": "PROCESSING", "worker_id": "dead", "heartbeat_at": stale}
        )
        session.commit()
    storage.delete(chunk_key(victim.work_key, victim.index))
    assert run_join(generation_id, sessions, storage, settings) is None
    report = reaper.reap(job_sessions(settings), storage, settings)
    assert report.orphans_resumed >= 1
    assert load(sessions, generation_id).status == "PROCESSING", "the generation is not redone"
    done = run_chunk(victim.id, sessions, storage, settings)
    assert done is not None and done.status == "DONE"
    redone = _chunks(sessions, generation_id)[1]
    assert redone.attempts == 2
    assert _sha(storage.path(redone.output_key)) == rendered, "the redo is the same file"
    finished = run_join(generation_id, sessions, storage, settings)
    assert finished is not None and finished.status == "COMPLETED"
    assert load(sessions, generation_id).attempts == 1, "planned once"


def test_a_dead_join_is_sent_again_and_leaves_one_output(local) -> None:  # type: ignore[no-untyped-def]
    """The join's worker stored its output, then died before finishing the row."""
    settings, sessions, storage, *_ = local
    generation_id, _ = _planned_and_rendered(local)
    with sessions() as session:
        session.query(Generation).filter_by(id=generation_id).update(
            {"stage": JOIN_STAGE, "heartbeat_at": utcnow() - timedelta(seconds=60)}
        )
        session.commit()
    orphan = f"generations/{generation_id}/deadbeef/output.mp4"
    storage.put_bytes(orphan, b"the dead join's output")
    assert run_join(generation_id, sessions, storage, settings) is None, "a join is running"

    report = reaper.reap(job_sessions(settings), storage, settings)
    assert report.orphans_resumed >= 1
    generation = load(sessions, generation_id)
    assert generation.status == "PROCESSING" and generation.stage == CHUNK_STAGE
    finished = run_join(generation_id, sessions, storage, settings)
    assert finished is not None and finished.status == "COMPLETED"
    generation = load(sessions, generation_id)
    assert storage.keys(f"generations/{generation_id}") == [generation.output_key]
    assert not storage.exists(orphan)
    with av.open(str(storage.path(generation.output_key))) as container:
        assert container.streams.video[0].frames == 75
    assert generation.attempts == 1, "planned once, chunks not redone"
    assert {c.attempts for c in _chunks(sessions, generation_id)} == {1}


def test_a_failing_chunk_fails_the_generation_with_its_code(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id, inputs = local
    generation_id = add_generation(sessions, org_id, input=inputs)
    run_generation(generation_id, sessions, storage, settings)
    chunks = _chunks(sessions, generation_id)
    assert run_chunk(chunks[0].id, sessions, storage, settings).status == "DONE"
    storage.put_bytes(f"{chunks[0].work_key}/plan.npz", b"not a plan")  # truncated upload
    failed = run_chunk(chunks[1].id, sessions, storage, settings)
    assert failed is not None and failed.status == "FAILED"
    assert failed.finished is not None and failed.finished.status == "FAILED"
    generation = load(sessions, generation_id)
    assert generation.status == "FAILED"
    assert generation.error_code == "generation_pipeline_failed"
    assert "chunk 1 (frames 25-49)" in generation.error and "plan" in generation.error
    # The remaining chunk notices its generation ended and does nothing.
    assert run_chunk(chunks[2].id, sessions, storage, settings) is None
    assert run_join(generation_id, sessions, storage, settings) is None


@pytest.mark.parametrize(
    ("clip", "ranges"),
    [
        ("video/pexels_woman_expressions.mp4", [(200, 215), (460, 472), (0, 3)]),
        ("video/grid_bbaf2n.mpg", [(40, 50), (70, 75)]),
    ],
)
def test_a_chunk_seeks_to_its_first_frame_and_sees_the_same_pictures(
    clip: str, ranges: list[tuple[int, int]]
) -> None:
    """Seeking (chunks deep into a long source) gives exactly the sequential read's frames."""
    from openlipsync.media.probe import probe
    from openlipsync.media.seek import SeekingSource

    path = media_path(clip)
    fps = probe(path).video.fps
    for start, stop in ranges:
        with SeekingSource(path, fps) as seeking, FrameSource(path, fps=fps) as sequential:
            for index in range(start, stop):
                assert np.array_equal(seeking.get(index), sequential.get(index)), (clip, index)
            if start > 0:
                assert seeking.seeks == 1 and seeking._fallback is None, "it really seeked"


def test_the_embedded_sqlite_worker_runs_chunks_end_to_end(local, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The default deployment (SQLite database and broker, one `openlipsync worker`) consumes
    the chunk and join messages too: no PostgreSQL or Redis needed for long videos."""
    from openlipsync.jobs import dispatch
    from tests.test_jobs_helpers import openlipsync_command, process, settings_env, wait_until

    settings, sessions, storage, org_id, inputs = local
    generation_id = add_generation(sessions, org_id, input=inputs)
    command, log = openlipsync_command("worker"), tmp_path / "worker.log"
    with process(command, settings_env(settings), log, kill_group=True):
        dispatch.enqueue_generation(generation_id)

        def finished():  # type: ignore[no-untyped-def]
            generation = load(sessions, generation_id)
            return generation if generation.status in ("COMPLETED", "FAILED") else None

        generation = wait_until(finished, 240, interval=0.5)
    assert generation.status == "COMPLETED", generation.error
    chunks = _chunks(sessions, generation_id)
    assert len(chunks) == 3 and {c.status for c in chunks} == {"DONE"}
    assert {c.attempts for c in chunks} == {1}
    with av.open(str(storage.path(generation.output_key))) as container:
        assert container.streams.video[0].frames == 75
        assert container.duration / 1e6 == pytest.approx(3.0, abs=0.03)


def test_face_effects_of_a_photo_survive_the_plan_file(tmp_path: Path) -> None:
    """sync-3 on a photo: blinks and head sway are rebuilt from the plan, frame for frame."""
    request = _request(
        tmp_path, video=media_path("photo/obama.jpg"), model="sync-3", sync_mode="loop"
    )
    write_plan(request, tmp_path / "plan.npz")
    loaded = load_plan(tmp_path / "plan.npz")
    assert loaded.look.effects is not None
    with planned(request, RunState()) as plan, FrameSource(request.video) as source:
        photo = source.get(0)
        for index in range(0, plan.timeline.frame_count, 7):
            expected = plan.look.frame(index, photo.copy())
            assert np.array_equal(loaded.look.frame(index, photo.copy()), expected), index
