"""Atomic file writes that respect the user's umask: the one writer every chorus output goes through.

`atomic_path(path)` yields a temporary path beside the target; when the block ends without an exception the
temporary file is fsynced and renamed over the target, so a reader sees the old file or the new one, never half
a file. Temporary files are created with mode 0666 & ~umask, like `open(path, "w")` would, not mkstemp's 0600.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path` for the caller to write; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The suffix keeps the real extension last, for writers that pick a format from it (matplotlib, pretty_midi).
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    # Create it with the umask's mode (O_EXCL: never someone else's file), so the renamed file gets it too.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask()))
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (see `atomic_path`); return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
