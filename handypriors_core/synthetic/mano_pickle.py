"""Writing MANO-format model pickles: plain numpy pickles, or *chumpy-style* ones as the official files are.

A chumpy-style pickle is protocol 2 with the Python-2-era global names (``numpy.core.multiarray``,
``scipy.sparse.csc``), array bytes as latin-1 text (as a Python 2 ``str`` reads back) and ``shapedirs`` as a
``chumpy.ch.Ch`` object whose state holds the array under ``"x"``: the loader's chumpy path is exercised without
chumpy installed.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidValueError

__all__ = ["write_mano_pickle"]


class _ChumpyCh:
    """Written as ``chumpy.ch.Ch``: the attributes a pickled chumpy array carries (value under ``x``)."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self._dirty_vars = set()
        self._itr = None
        self._make_dense = False
        self._make_sparse = False
        self._depends_on_deps = {}


_NUMPY_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array reconstructor, whichever module holds it


class _LegacyPickler(pickle.Pickler):
    """Protocol-2 pickler writing numpy arrays the way Python 2 numpy did (raw bytes as a latin-1 ``str``)."""

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            fortran = bool(obj.flags.f_contiguous and not obj.flags.c_contiguous)
            raw = obj.tobytes(order="F" if fortran else "C")
            state = (1, obj.shape, obj.dtype, fortran, raw.decode("latin-1"))
            return (_NUMPY_RECONSTRUCT, (np.ndarray, (0,), "b"), state)
        return NotImplemented


def _legacy_names(data: bytes) -> bytes:
    """Rewrite the GLOBAL opcodes of a protocol-2 pickle to the names a Python 2 MANO file uses."""
    rename = {
        (_ChumpyCh.__module__, _ChumpyCh.__qualname__): ("chumpy.ch", "Ch"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"): ("numpy.core.multiarray", "scalar"),
        ("scipy.sparse._csc", "csc_matrix"): ("scipy.sparse.csc", "csc_matrix"),
    }
    ops = list(pickletools.genops(data))
    out = io.BytesIO()
    for k, (op, arg, pos) in enumerate(ops):
        end = ops[k + 1][2] if k + 1 < len(ops) else len(data)
        if op.name == "GLOBAL":
            module, name = rename.get(tuple(arg.split(" ", 1)), tuple(arg.split(" ", 1)))
            out.write(b"c" + f"{module}\n{name}\n".encode("ascii"))
        else:
            out.write(data[pos:end])
    return out.getvalue()


def write_mano_pickle(path: str | os.PathLike, model: dict[str, Any], style: str = "numpy", protocol: int = 4) -> Path:
    """Write ``model`` (a dict of MANO arrays) to ``path`` and return the path.

    ``style``: "numpy" (plain arrays, pickle ``protocol``) or "chumpy" (protocol 2, Python-2-era names,
    ``shapedirs`` as a ``chumpy.ch.Ch`` object; see the module docstring).
    """
    if style not in ("numpy", "chumpy"):
        raise InvalidValueError(f"style must be 'numpy' or 'chumpy'; got {style!r}")
    path = Path(path)
    if style == "numpy":
        path.write_bytes(pickle.dumps(model, protocol=protocol))
        return path
    legacy = dict(model)
    legacy["shapedirs"] = _ChumpyCh(np.asarray(model["shapedirs"]))
    buf = io.BytesIO()
    _LegacyPickler(buf, protocol=2).dump(legacy)
    path.write_bytes(_legacy_names(buf.getvalue()))
    return path
