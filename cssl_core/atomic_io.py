"""Atomic file writes: a reader sees the previous file or the complete new one, never a part of one.

Every write goes to a hidden temporary sibling (same directory, so the final `os.replace` is an atomic
rename on the same file system), is flushed and fsync'ed (so a crash cannot leave a renamed but empty
file, and delayed-allocation file systems report ENOSPC here rather than never), optionally checked
(size or a read-back of the header: some C libraries, e.g. niftilib inside SimpleITK, report a short
write on stderr and return normally), and only then renamed over the target. On any failure the
temporary file is removed and the previous target, if any, is left untouched.

A full disk (ENOSPC, or EDQUOT for a quota) becomes `OutOfSpaceError`: one line that names the directory
and roughly how much more space is needed, which a CLI can print as-is.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# pyarrow and some C extensions raise a plain OSError whose errno is unset; their text still says it.
_OUT_OF_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp(\.[^/]*)?$")
_MB = 1_000_000
NPY_HEADER_BYTES = 128  # a .npy header is a multiple of 64 bytes, 128 for any ordinary array


class OutOfSpaceError(OSError):
    """The device holding `directory` is full: `needed_bytes` is about how much more a write needs.

    An OSError with errno ENOSPC, so code that already handles OSError keeps working; its str() is the
    one-line message alone (no "[Errno 28]" prefix) so a CLI can print `error: <message>`.
    """

    def __init__(self, directory: str | os.PathLike[str], needed_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.needed_bytes = None if needed_bytes is None else max(int(needed_bytes), 0)
        super().__init__(errno.ENOSPC, _out_of_space_message(self.directory, self.needed_bytes))

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, ...]:  # survives a process pool (pickled by its arguments)
        return type(self), (str(self.directory), self.needed_bytes)


class ShortWriteError(OSError):
    """A writer returned normally but the file is shorter than it must be (and the disk is not full)."""


def _size_text(n_bytes: int) -> str:
    if n_bytes >= 10_000 * _MB:
        return f"~{n_bytes / 1e9:.1f} GB"
    return f"~{max(1, math.ceil(n_bytes / _MB))} MB"


def _out_of_space_message(directory: Path, needed: int | None) -> str:
    amount = f"needs {_size_text(needed)} more" if needed else "needs more space"
    return f"no space left on device writing to {directory} ({amount}); free space or point the output elsewhere"


def is_out_of_space(exc: BaseException) -> bool:
    """Whether `exc` reports a full device or an exhausted quota."""
    if isinstance(exc, OutOfSpaceError):
        return True
    if not isinstance(exc, OSError):
        return False
    return exc.errno in OUT_OF_SPACE_ERRNOS or any(text in str(exc) for text in _OUT_OF_SPACE_TEXT)


def free_bytes(directory: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged writer may still use on the device holding `directory` (or its nearest
    existing parent: the directory itself may not exist yet)."""
    path = Path(directory).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def out_of_space(directory: str | os.PathLike[str], size: int | None) -> OutOfSpaceError:
    """The error for a write of `size` bytes that did not fit; call it after removing the partial file,
    so the free space it measures is what the retry will have."""
    if size is None:
        return OutOfSpaceError(directory)
    return OutOfSpaceError(directory, max(size - free_bytes(directory), 1))


def temp_sibling(path: str | os.PathLike[str]) -> Path:
    """A unique hidden name next to `path` that keeps its suffixes (writers such as numpy.save or
    SimpleITK choose the format by extension)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{''.join(path.suffixes)}")


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of `temp_sibling`'s (left behind only if the process was killed)."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temps(directory: str | os.PathLike[str]) -> int:
    """Delete temporary files a killed process left in `directory` (not recursive); returns how many."""
    removed = 0
    for entry in Path(directory).iterdir() if Path(directory).is_dir() else ():
        if entry.is_file() and is_temp_name(entry.name):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def check_size(path: str | os.PathLike[str], expected: int) -> None:
    """Raise unless the file holds exactly `expected` bytes; a short file on a full disk is OutOfSpaceError."""
    path = Path(path)
    actual = path.stat().st_size
    if actual == expected:
        return
    if actual < expected and free_bytes(path.parent) < expected - actual:
        raise OutOfSpaceError(path.parent, expected - actual)
    raise ShortWriteError(errno.EIO, f"{path.name} holds {actual} bytes, expected {expected}")


def sync_dir(directory: str | os.PathLike[str]) -> None:
    """Make renames in `directory` durable; some file systems cannot open or sync a directory: skip there."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(temp: str | os.PathLike[str], path: str | os.PathLike[str], *, durable: bool = True) -> None:
    """fsync `temp` and rename it over `path`. A failure leaves `temp` for the caller to remove."""
    temp, path = Path(temp), Path(path)
    if durable:
        _fsync_file(temp)
    os.replace(temp, path)
    if durable:
        sync_dir(path.parent)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, size_hint: int | None = None, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it replaces `path`, on any error it is removed.

    Use it for writers that only accept a file name. `size_hint` (bytes the write needs) makes an
    out-of-space error say how much more space is needed, and lets a failure without an errno count as
    out of space when that much is not free. A writer that may return normally after a short write
    should be followed by `check_size` (or a header read-back) inside the block.
    """
    path = Path(path)
    temp = temp_sibling(path)
    try:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(f"the writer did not create {temp.name}")
        commit(temp, path, durable=durable)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OutOfSpaceError) or not isinstance(exc, Exception):
            raise
        if is_out_of_space(exc) or did_not_fit(path.parent, size_hint):
            raise out_of_space(path.parent, size_hint) from exc
        raise


def did_not_fit(directory: str | os.PathLike[str], size: int | None) -> bool:
    """Whether a failed write of `size` bytes could not have fitted: the verdict for writers that fail
    without an errno (numpy: "N requested and M written", C++ libraries: RuntimeError). Call it after
    removing the partial file."""
    return size is not None and free_bytes(directory) < size


def write_with(
    path: str | os.PathLike[str],
    write: Callable[[Path], object],
    *,
    expected_size: int | None = None,
    verify: Callable[[Path], None] | None = None,
    durable: bool = True,
) -> None:
    """Atomically create `path` with a writer that takes a file name (SimpleITK, torch.save, ...).

    The file is checked before it is renamed: against `expected_size` when given, then by `verify`.
    A writer failing without an errno (C++ libraries raise RuntimeError) while the device lacks
    `expected_size` free bytes counts as out of space too.
    """
    with atomic_path(path, size_hint=expected_size, durable=durable) as temp:
        write(temp)
        if expected_size is not None:
            check_size(temp, expected_size)
        if verify is not None:
            verify(temp)


def write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *, durable: bool = True) -> None:
    """Atomically replace `path` with `data`."""
    view = memoryview(data)
    with atomic_path(path, size_hint=view.nbytes, durable=durable) as temp, open(temp, "wb") as fp:
        fp.write(view)
        fp.flush()


def write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", durable: bool = True) -> None:
    write_bytes(path, text.encode(encoding), durable=durable)


def write_json(
    path: str | os.PathLike[str], data: Any, *, allow_nan: bool = True, sort_keys: bool = True, durable: bool = True
) -> None:
    """JSON with sorted keys, two-space indent and a final newline: stable bytes for DVC hashes. The one writer
    of every stage's JSON outputs and metrics, so that none is left half-written by a crash or a full disk.

    `allow_nan=False` refuses NaN and infinities (ValueError) for a file that must stay strict JSON; by default
    they are written as json.dumps writes them (NaN, Infinity), which Python's json module reads back.
    `sort_keys=False` keeps the dict order, for a file whose key order carries meaning (the report's metric tree:
    stage and task order, as `dvc metrics show` and `cssl summary` list them).
    """
    text = json.dumps(data, indent=2, sort_keys=sort_keys, allow_nan=allow_nan)
    write_text(path, text + "\n", durable=durable)


def write_parquet(table: Any, path: str | os.PathLike[str], *, durable: bool = True, **options: Any) -> None:
    """Atomically write a pyarrow Table as parquet (encoded in memory, so the size is known up front)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    write_bytes(path, memoryview(sink.getvalue()), durable=durable)


def save_numpy(path: str | os.PathLike[str], array: np.ndarray, *, durable: bool = True) -> None:
    """Atomically write a .npy file (streamed to disk: arrays may be larger than memory allows twice)."""
    array = np.asanyarray(array)
    size = array.nbytes + NPY_HEADER_BYTES
    with atomic_path(path, size_hint=size, durable=durable) as temp, open(temp, "wb") as fp:
        np.save(fp, array, allow_pickle=False)
        fp.flush()
