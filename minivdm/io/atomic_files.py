"""Files written whole or not at all: nothing a user made is lost to an interrupted write.

The data goes to a temporary file next to the destination (same folder, so the same file system), is flushed
to disk (``fsync``: else a crash of the machine can leave the renamed file empty), and is then renamed over the
destination with ``os.replace``, which is atomic within one file system: a reader sees the old file or the new
one, never half of either. If anything fails, Ctrl-C in a notebook included, the temporary file is removed and
the destination is left as it was.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)`` to fill a temporary file, then move it to ``path``. Parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")  # unique: two writers never collide
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_bytes(data))


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """UTF-8, line endings kept as given (CSV files carry their own)."""
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8", newline=""))
