"""Reading a JSON file with an error that names it (sequence ``meta.json``, ``poses.json``, MANO parameters)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InvalidValueError

__all__ = ["read_json"]


def read_json(path: str | os.PathLike, what: str = "file", error: type[Exception] = InvalidValueError) -> Any:
    """The parsed content of the JSON file ``path``.

    A missing file raises ``error("<what> not found: <path>")``; an unreadable or malformed one
    ``error("<what> <path> is not valid JSON: <reason>")``.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON: {exc}") from None
