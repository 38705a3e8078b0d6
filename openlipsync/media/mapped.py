"""Arrays as long as the input, kept in a scratch file instead of in memory.

A per-frame or per-sample array grows with the input: three hours of face landmarks are a
gigabyte, three hours of 16 kHz audio 0.7 GB per sound. Such arrays live in a file mapped into
memory (numpy's memmap: every numpy operation works on them). Touched pages of a mapping count
as the process's memory until they are let go, so the code that walks one calls `release` at
block boundaries; the data stays in the file (and in the page cache, which the kernel can write
out and reclaim), and the next read maps it back.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

BLOCK = 1024  # rows per block in `in_blocks`: 4 MB of landmarks


def scratch_array(path: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A new zero-filled array in the raw file `path`, its disk space reserved up front: a
    write into a mapped page the disk has no room for kills the process (SIGBUS), where a
    full disk here is an OSError (ENOSPC) the caller can report."""
    _reserve(path, int(np.prod(shape)) * np.dtype(dtype).itemsize, "wb")
    return np.memmap(path, dtype, "r+", shape=shape)


def grown(array: np.ndarray, rows: int) -> np.ndarray:
    """The same scratch array with room for `rows` rows (the file grows; nothing is copied).
    A plain in-memory array is copied into a larger one."""
    if rows <= len(array):
        return array
    path = getattr(array, "filename", None)
    if path is None:
        bigger = np.zeros((rows, *array.shape[1:]), array.dtype)
        bigger[: len(array)] = array
        return bigger
    array.flush()
    release(array)
    shape = (rows, *array.shape[1:])
    _reserve(Path(path), int(np.prod(shape)) * array.dtype.itemsize, "ab")
    return np.memmap(path, array.dtype, "r+", shape=shape)


def _reserve(path: Path, size: int, mode: str) -> None:
    """Make `path` (opened with `mode`: "wb" empties it first) at least `size` bytes long,
    with its blocks allocated (zeros)."""
    with open(path, mode) as handle:
        if size > 0 and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(handle.fileno(), 0, size)
        elif size > handle.seek(0, os.SEEK_END):  # no fallocate (macOS): sparse, as np.memmap
            handle.truncate(size)


def release(array: np.ndarray) -> None:
    """Let go of the pages of `array`'s file mapping that this process holds (a no-op for an
    array in memory). Shared mappings keep their data: the next access reads it back."""
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, mmap.mmap) and not base.closed and hasattr(base, "madvise"):
        base.madvise(mmap.MADV_DONTNEED)  # Unix; elsewhere the pages stay until unmapped


def blocks(array: np.ndarray, block: int = BLOCK) -> Iterator[np.ndarray]:
    """`array` as consecutive slices of `block` rows, letting go of a mapped array's pages
    after each one has been used."""
    for start in range(0, len(array), block):
        yield array[start : start + block]
        release(array)


def in_blocks(
    function: Callable[[np.ndarray], np.ndarray], array: np.ndarray, block: int = BLOCK
) -> np.ndarray:
    """`function` of `array` (one result row per input row), computed `block` rows at a time so
    that a mapped array never has more than a block of pages in memory."""
    if len(array) <= block:
        return function(array)
    return np.concatenate([function(part) for part in blocks(array, block)])
