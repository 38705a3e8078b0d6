"""Arrays in scratch files (media/mapped.py): the same values as in memory, and pages let go.

The memory figures are the process's own mapped file pages (RssFile in /proc/self/status),
sampled by a thread while the work runs, so a peak between two releases counts.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from openlipsync.engine.library import head_pose
from openlipsync.engine.mouth import mouth_shape
from openlipsync.engine.tracking import LandmarkRows, smooth_in_place
from openlipsync.media.mapped import grown, in_blocks, release, scratch_array

MIB = 2**20
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads RssFile from /proc/self/status (Linux)"
)


def _rss_file() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile line in /proc/self/status")


@contextmanager
def peak_mapped() -> Iterator[dict[str, int]]:
    """{"peak": most file-backed memory above the start} while the block runs."""
    start = _rss_file()
    seen = {"peak": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen["peak"] = max(seen["peak"], _rss_file() - start)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()


def _faces(frames: int, seed: int = 3) -> np.ndarray:
    """A moving, noisy face mesh per frame (a real face's proportions matter not here)."""
    rng = np.random.default_rng(seed)
    face = rng.uniform(100, 300, (478, 2)).astype(np.float32)
    drift = 15 * np.sin(np.arange(frames) / 40.0)[:, None, None]
    return (face + drift + rng.normal(0, 1.0, (frames, 478, 2))).astype(np.float32)


@linux_only
def test_released_pages_leave_memory_and_keep_their_data(tmp_path: Path) -> None:
    array = scratch_array(tmp_path / "a.f32", (64 * MIB // 4,), np.float32)
    before = _rss_file()
    array[:] = np.arange(array.size, dtype=np.float32)
    assert _rss_file() - before > 48 * MIB  # written pages are this process's memory...
    release(array[10:20])  # a view lets go of its whole mapping
    assert _rss_file() - before < 8 * MIB  # ...until let go
    assert np.array_equal(array[::4096], np.arange(0, array.size, 4096, dtype=np.float32))


def test_release_of_an_array_in_memory_does_nothing() -> None:
    array = np.arange(10.0)
    release(array)
    release(array[2:5])
    assert np.array_equal(array, np.arange(10.0))


def test_scratch_arrays_reserve_their_disk_space_up_front(tmp_path: Path) -> None:
    """A mapped write the disk has no room for is a SIGBUS; reserved blocks never are."""
    array = scratch_array(tmp_path / "r.f32", (1000, 478, 2), np.float32)
    size = 1000 * 478 * 2 * 4
    assert (tmp_path / "r.f32").stat().st_blocks * 512 >= size
    array[-1] = 7.0
    bigger = grown(array, 3000)
    assert (tmp_path / "r.f32").stat().st_blocks * 512 >= 3 * size
    assert (bigger[-1] == 0).all() and (bigger[999] == 7).all()
    again = scratch_array(tmp_path / "r.f32", (10,), np.float32)  # a fresh file, not the old one
    assert not again.any() and (tmp_path / "r.f32").stat().st_size == 40


@pytest.mark.parametrize("mapped", [True, False])
def test_grown_keeps_the_rows_and_adds_zeros(tmp_path: Path, mapped: bool) -> None:
    shape = (5, 478, 2)
    array = scratch_array(tmp_path / "g.f32", shape, np.float32) if mapped else np.zeros(shape)
    array[:] = _faces(5)
    bigger = grown(array, 12)
    assert bigger.shape == (12, 478, 2) and isinstance(bigger, np.memmap) == mapped
    assert np.array_equal(bigger[:5], _faces(5).astype(bigger.dtype))
    assert not bigger[5:].any()
    assert grown(bigger, 3) is bigger
    if mapped:
        assert (tmp_path / "g.f32").stat().st_size == 12 * 478 * 2 * 4


@pytest.mark.parametrize("function", [mouth_shape, head_pose])
def test_in_blocks_equals_one_call(tmp_path: Path, function) -> None:
    faces = _faces(1000)
    mapped = scratch_array(tmp_path / "f.f32", faces.shape, np.float32)
    mapped[:] = faces
    assert np.array_equal(in_blocks(function, mapped, block=97), function(faces))
    assert np.array_equal(in_blocks(function, faces), function(faces))


def test_landmark_rows_in_a_file_equal_rows_in_memory(tmp_path: Path, monkeypatch) -> None:
    """Including a frame count the probe under-estimated (the file grows) and missing faces."""
    monkeypatch.setattr("openlipsync.engine.tracking.RELEASE_ROWS", 7)
    faces = _faces(300)
    rows = {"memory": LandmarkRows(100), "file": LandmarkRows(100, tmp_path / "t.f32")}
    for index, face in enumerate(faces):
        for kept in rows.values():
            kept.append(None if index % 50 == 3 else face)
    memory, on_disk = rows["memory"].array(), rows["file"].array()
    assert isinstance(on_disk, np.memmap) and on_disk.shape == (300, 478, 2)
    assert np.array_equal(memory, on_disk, equal_nan=True)
    assert np.isnan(on_disk[53]).all() and np.array_equal(on_disk[54], faces[54])


@linux_only
def test_a_long_track_in_a_file_stays_out_of_memory(tmp_path: Path) -> None:
    """20000 frames (13 minutes at 25 fps, 73 MiB of landmarks) written, smoothed in place and
    measured as the pipeline does: at most a few blocks of it are ever in memory."""
    faces = _faces(500)
    rows = LandmarkRows(20_000, tmp_path / "track.f32")
    with peak_mapped() as written:
        for index in range(20_000):
            rows.append(faces[index % 500])
    track = rows.array()
    present = np.ones(len(track), bool)
    present[[4000, 4001, 15000]] = False
    with peak_mapped() as smoothed:
        smooth_in_place(track, present, 25.0)
    with peak_mapped() as measured:
        shapes = in_blocks(mouth_shape, track)
        poses = in_blocks(head_pose, track)
    total = track.nbytes
    assert total > 70 * MIB
    for peak in (written, smoothed, measured):
        assert peak["peak"] < total // 4, (written, smoothed, measured, total)
    assert np.isnan(shapes[4000]).all() and np.isfinite(shapes[present]).all()
    assert poses.shape == (20_000, 2) and np.isfinite(track[present]).all()


@linux_only
def test_the_mouth_library_keeps_few_of_its_crops_in_memory() -> None:
    """The pro library may fill a 512 MB crop file; only the last few crops stay in memory."""
    import cv2

    from openlipsync.engine.library import MouthLibrary
    from openlipsync.engine.tracking import FaceTracker
    from tests.conftest import media_path

    photo = cv2.cvtColor(cv2.imread(str(media_path("photo/obama.jpg"))), cv2.COLOR_BGR2RGB)
    with FaceTracker() as tracker:
        landmarks = tracker.process(photo)
    assert landmarks is not None
    library = MouthLibrary("pro")
    try:
        with peak_mapped() as adding:
            for index in range(400):
                library.add(index, photo, landmarks)
        written = library.count * library.crop(0).nbytes
        assert written > 40 * MIB, written
        assert adding["peak"] < written // 4, (adding, written)
        assert np.array_equal(library.crop(library.count - 1), library.crop(0))
    finally:
        library.close()
