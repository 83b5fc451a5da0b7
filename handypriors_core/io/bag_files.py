"""Finding and opening rosbag2 recordings (a folder with ``metadata.yaml``, a single ``.mcap`` or ``.db3``), and the
errors of reading one: every problem is a :class:`BagError` with one line naming the bag (rosbags' own exceptions
never escape).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import HandyPriorsError, InvalidValueError

__all__ = ["BagError", "MissingTopicError", "error_line", "find_bags", "is_bag", "open_bag"]


class BagError(HandyPriorsError):
    """A bag cannot be read or does not hold what the tracker needs (the message names bag and topic)."""


class MissingTopicError(BagError):
    """A required topic is not in the bag (and no unambiguous replacement exists)."""


def is_bag(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a rosbag2: a folder with ``metadata.yaml`` or a ``.mcap`` / ``.db3`` file."""
    p = Path(path)
    if p.is_dir():
        return (p / "metadata.yaml").is_file()
    return p.is_file() and p.suffix in (".mcap", ".db3")


def find_bags(folder: str | os.PathLike) -> list[Path]:
    """Every bag below ``folder`` (bag folders are not searched inside), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidValueError(f"bag folder not found: {root}")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if "metadata.yaml" in filenames and here != root:
            found.append(here)
            dirnames[:] = []
            continue
        if "metadata.yaml" in filenames and here == root:
            return [root]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(here / f for f in sorted(filenames) if f.endswith((".mcap", ".db3")))
    return sorted(found)


def open_bag(path: str | os.PathLike):
    """An opened ``rosbags.rosbag2.Reader`` for a bag folder or a single ``.mcap`` / ``.db3`` file.

    Raises BagError (missing path, unknown format, corrupt or unreadable bag) with one line naming the bag.
    """
    from rosbags.rosbag2 import Reader

    p = Path(path)
    if not p.exists():
        raise BagError(f"bag not found: {p}")
    if p.is_dir() and not (p / "metadata.yaml").is_file():
        raise BagError(f"{p} is not a rosbag2 folder (no metadata.yaml)")
    try:
        reader = Reader(p)
        reader.open()
    except Exception as exc:
        raise BagError(f"cannot read bag {p}: {error_line(exc)}") from exc
    return reader


def error_line(exc: BaseException) -> str:
    """One line naming an exception's type and its first message line (for BagError messages)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
