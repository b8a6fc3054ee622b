"""Writing files so that a kill, a crash or a full disk never leaves a torn one, and reading small JSON files.

Every output reslab writes whole (checkpoints, config.json, summary.json, data caches, downloads) goes through
`atomic_write`: the bytes go to a temporary file in the same folder, are flushed to disk, and only then renamed over
the real name. A failure at any moment leaves either the old file or the new one, never a mix; a failure that Python
sees removes the temporary file, and the run folder removes a killed process's (`RunDir.lock`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from reslab.errors import ReslabError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, durable: bool = True) -> Iterator[IO[Any]]:
    """Yield a file object; on a clean exit its contents replace ``path`` in one rename (see `atomic_path`)."""
    with atomic_path(path, durable=durable) as tmp, open(tmp, mode) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the block to write (for writers that want a file name, such as an
    exporter); on a clean exit the file replaces ``path`` in one rename.

    The temporary file is made first, so an unwritable folder fails before any work. An exception inside the block
    (a full disk, a failed check, Ctrl-C) removes the temporary file and leaves any existing ``path`` untouched.
    Write failures, including those that surface inside a library as another exception type (``torch.save`` reports
    a full disk as a ``RuntimeError``), become one-line `ReslabError`s that name the file and the free space.
    ``durable`` also fsyncs the file and its folder, so the rename survives a power cut.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise ReslabError(f"cannot write {path}: {e.strerror or e}") from e
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # the bytes are on disk before the name points at them
            finally:
                os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are ordinary output files
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, ReslabError | KeyboardInterrupt | SystemExit):
            raise
        if isinstance(e, OSError) or _looks_like_io_failure(e):
            raise ReslabError(f"cannot write {path}: {_why(e)}{_free_space(path.parent)}; any earlier version of "
                              "the file is intact") from e  # fmt: skip
        raise


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return "the write failed"


def _looks_like_io_failure(e: BaseException) -> bool:
    # torch.save writes through a C++ stream writer whose failures come back as RuntimeError ("unexpected pos",
    # "file write failed", "PytorchStreamWriter failed writing"); nothing else torch.save raises is a RuntimeError.
    return isinstance(e, RuntimeError) and any(
        s in str(e) for s in ("inline_container", "PytorchStreamWriter", "write failed", "unexpected pos")
    )


def _free_space(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f" ({free / 2**20:.0f} MiB free there)"


def fsync_dir(folder: Path) -> None:
    """Make a rename durable; not every platform lets a folder be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    """Replace a small text file atomically and durably."""
    with atomic_write(path, "w") as f:
        f.write(text)


def json_text(data: Any, indent: int | None = None) -> str:
    """``data`` as standard JSON: a NaN or infinity (a diverged loss) is written as null, never as the bare ``NaN``
    that Python's json writes and other readers reject."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False)


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json_text(data, indent=2) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; a missing, unreadable or malformed file is a one-line `ReslabError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ReslabError(f"{path} not found") from e
    except (OSError, ValueError) as e:
        raise ReslabError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise ReslabError(f"cannot read {path}: not a JSON object")
    return data
