"""File formats and atomic writes. Every output goes through ``atomic_path``: temp file + fsync + rename, so a
half-written file never looks done."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mck.errors import DiskFullError, MckError

#: Free space kept in reserve beyond a write's known size (file system metadata, the job record, the log).
MARGIN_BYTES = 256 << 10
_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "errno = 28", "errno = 122")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it: h5py and ffmpeg wrap the OS error in their own) is ENOSPC/EDQUOT."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return True
        if any(t in str(exc) for t in _FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes (for this user) on the file system holding ``path`` or its nearest existing ancestor."""
    p = os.path.abspath(path)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _size(n: int | None) -> str:
    if n is None:
        return "unknown space"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def disk_full(path: str | os.PathLike, need: int | None = None, reserve: int = 0) -> DiskFullError:
    """The one-line error for an output that does not fit (``need`` bytes plus ``reserve`` kept free, if known)."""
    free = free_bytes(os.path.dirname(os.path.abspath(path)))
    needs = f", needs {_size(need)}" + (f" + {_size(reserve)} reserve" if reserve else "") if need else ""
    return DiskFullError(f"disk full: cannot write {path} ({_size(free)} free{needs})",
                         fix="free space there, or set project.output_root=… to a disk with room, and re-run; "
                             "nothing was left half-written")


def check_free_space(path: str | os.PathLike, nbytes: int, margin: int = MARGIN_BYTES) -> None:
    """Refuse before writing ``nbytes`` to ``path`` when its file system has less free (plus a margin)."""
    free = free_bytes(os.path.dirname(os.path.abspath(path)))
    if free is not None and free < nbytes + margin:
        raise disk_full(path, nbytes, margin)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it onto ``path``.

    The temporary name keeps the final suffix (``x.partial-123.h5``) so libraries that look at extensions work.
    On error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.partial-", suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(path) from None
        raise
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(exc) and not isinstance(exc, MckError):
            raise disk_full(path) from None
        raise


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` in .npy format, atomically."""
    array = np.asarray(array)
    check_free_space(path, array.nbytes)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


def save_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, default=_json_default) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_h5(path: str | os.PathLike, datasets: dict[str, Any], attrs: dict[str, Any] | None = None) -> None:
    """Write ``{name: array}`` (names may contain ``/`` for groups) to an HDF5 file, atomically."""
    import h5py

    # built in memory, then written with plain file I/O: a full disk is then an ordinary OSError (HDF5 failing
    # mid-write prints pages of errors and can crash the interpreter), and the size is known before writing
    name = f"mck-{os.getpid()}-{id(datasets)}-{os.path.basename(path)}"
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        for name, value in datasets.items():
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
                f.create_dataset(name, data=list(value), dtype=h5py.string_dtype("utf-8"))
            else:
                f.create_dataset(name, data=np.asarray(value))
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        f.flush()
        image = f.id.get_file_image()
    save_bytes(path, image)


def save_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, after checking that it fits."""
    check_free_space(path, len(data))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def load_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
