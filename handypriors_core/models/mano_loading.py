"""Safe loading of MANO model pickles (``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``) without chumpy.

The official files are Python-2 pickles of a dict whose values are numpy arrays, a ``scipy.sparse`` CSC
matrix (``J_regressor``) and chumpy ``Ch`` objects (``shapedirs``, sometimes others). :func:`load_mano_pickle`
reads them with a restricted unpickler (``encoding="latin1"``) whose ``find_class`` is the only gate to
Python objects:

- numpy reconstruction helpers (``ndarray``, ``dtype``, ``_reconstruct``, ``scalar``, ``_frombuffer``, under
  both the numpy 1 ``numpy.core`` and the numpy 2 ``numpy._core`` module names) are allowed;
- ``scipy.sparse`` CSC/CSR matrix classes (``scipy.sparse.csc`` of old releases, ``scipy.sparse._csc`` of new
  ones) map to a stand-in that only records ``data``/``indices``/``indptr``/shape; the matrix is rebuilt here;
- every ``chumpy.*`` class maps to a stand-in that records the pickled state; a plain ``Ch`` keeps its value
  in the state's ``"x"`` entry, which becomes the array (a chumpy *expression* has no stored value and is
  refused with a ModelFileError naming the key and file);
- a few inert builtins (``set``, ``list``, ``slice`` ...) and ``_codecs.encode`` for latin-1 are allowed;
- anything else (``os.system``, ``builtins.eval``, ``getattr`` ...) is refused: the file is never executed.

All failures raise :class:`~handypriors_core.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import builtins
import codecs
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from ..errors import ModelFileError

__all__ = ["RestrictedUnpickler", "load_mano_pickle", "loads_mano_pickle"]


def _numpy_module(name: str):
    """numpy's private module ``name`` (``"multiarray"`` / ``"numeric"``) in numpy 2 (``_core``) or 1 (``core``)."""
    import importlib

    for prefix in ("numpy._core", "numpy.core"):
        try:
            return importlib.import_module(f"{prefix}.{name}")
        except ImportError:
            continue
    raise ImportError(f"numpy has no core module {name!r}")  # pragma: no cover


_NUMPY_FUNCTIONS = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
_NUMPY_CORE_PREFIXES = ("numpy.core.", "numpy._core.")
_BUILTIN_MODULES = ("builtins", "__builtin__")
_SAFE_BUILTINS = frozenset(
    {"set", "frozenset", "list", "dict", "tuple", "bytearray", "bytes", "slice", "complex", "bool", "int", "float",
     "str", "object"}
)
_SPARSE_MODULES = frozenset(
    {"scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse._arrays"}
)
_SPARSE_CLASSES = frozenset({"csc_matrix", "csr_matrix", "csc_array", "csr_array"})


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle referenced a global that the restricted unpickler does not allow."""


class _PickledObject:
    """Base of the stand-ins: records constructor arguments and the pickled state, runs nothing."""

    pickled_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args = args
        obj.state = {}
        return obj

    def __init__(self, *args, **kwargs):  # protocol 0/1 call the class; keep what __new__ recorded
        pass

    def __setstate__(self, state):
        self.state = state


class _ChumpyObject(_PickledObject):
    """What a chumpy ``Ch`` (or other chumpy class) unpickles to here."""

    def to_array(self, key: str, source: str) -> np.ndarray:
        state = self.state[0] if isinstance(self.state, tuple) and self.state else self.state
        value = state.get("x") if isinstance(state, dict) else None
        if isinstance(value, _ChumpyObject):
            return value.to_array(key, source)
        if value is None or not isinstance(value, (np.ndarray, np.generic, int, float)):
            raise ModelFileError(
                f"{source}: entry {key!r} is a chumpy {self.pickled_name} object without a stored array value "
                "(only plain chumpy.ch.Ch arrays can be read without chumpy); re-save the file with its values "
                "as numpy arrays"
            )
        return np.asarray(value)


class _SparseObject(_PickledObject):
    """What a ``scipy.sparse`` CSC/CSR matrix unpickles to here (rebuilt by :meth:`to_scipy`)."""

    def to_scipy(self, key: str, source: str):
        state = self.state if isinstance(self.state, dict) else {}
        shape = state.get("_shape", state.get("shape"))
        try:
            data, indices, indptr = (np.asarray(state[k]) for k in ("data", "indices", "indptr"))
            shape = tuple(int(s) for s in shape)
            cls = scipy.sparse.csr_matrix if "csr" in self.pickled_name else scipy.sparse.csc_matrix
            return cls((data, indices, indptr), shape=shape)
        except Exception as exc:
            raise ModelFileError(f"{source}: entry {key!r} is a malformed {self.pickled_name} ({exc})") from exc


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals a MANO model file needs (see the module docstring).

    Stand-in classes and helper functions are created per unpickler, so nothing a pickle does to them (e.g. a
    ``BUILD`` opcode applied to a class) outlives one load.
    """

    def __init__(self, file, source: str = "<bytes>"):
        super().__init__(file, encoding="latin1")
        self.source = source
        self._stand_ins: dict[tuple[str, str], type] = {}

        def latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
            # stand-in for _codecs.encode: pickles of bytes use it for text -> bytes with latin-1 only
            if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
                raise _RefusedGlobal(f"_codecs.encode with encoding {encoding!r}")
            return obj.encode("latin-1", errors)

        def reconstructor(cls, base, state):
            # stand-in for copyreg._reconstructor (protocol 0/1 objects): only builds the stand-in classes
            if not (isinstance(cls, type) and issubclass(cls, _PickledObject)) or base is not object:
                raise _RefusedGlobal(f"copyreg._reconstructor for {cls!r}")
            return cls.__new__(cls)

        self._latin1_encode = latin1_encode
        self._reconstructor = reconstructor

    def _stand_in(self, base: type, module: str, name: str) -> type:
        key = (module, name)
        if key not in self._stand_ins:
            self._stand_ins[key] = type(name, (base,), {"pickled_name": f"{module}.{name}"})
        return self._stand_ins[key]

    def find_class(self, module: str, name: str):
        if module.startswith(_NUMPY_CORE_PREFIXES):
            sub = module.split(".")[-1]
            if (sub, name) in _NUMPY_FUNCTIONS:
                return getattr(_numpy_module(sub), name)
        elif module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        elif module in _BUILTIN_MODULES and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        elif module == "_codecs" and name == "encode":
            return self._latin1_encode
        elif module in ("copyreg", "copy_reg") and name == "_reconstructor":
            return self._reconstructor
        elif module == "chumpy" or module.startswith("chumpy."):
            return self._stand_in(_ChumpyObject, module, name)
        elif module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            return self._stand_in(_SparseObject, module, name)
        raise _RefusedGlobal(f"{module}.{name}")


def _convert(value: Any, key: str, source: str) -> Any:
    if isinstance(value, _ChumpyObject):
        return value.to_array(key, source)
    if isinstance(value, _SparseObject):
        return value.to_scipy(key, source)
    if isinstance(value, _PickledObject):  # pragma: no cover - only the two kinds above exist
        raise ModelFileError(f"{source}: entry {key!r} holds an unsupported object {value.pickled_name}")
    return value


def loads_mano_pickle(data: bytes, source: str = "<bytes>") -> dict[str, Any]:
    """Unpickle MANO model bytes safely; see :func:`load_mano_pickle`. ``source`` names the data in errors."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), source).load()
    except _RefusedGlobal as exc:
        raise ModelFileError(
            f"{source}: refusing to load {exc} from the pickle: a MANO model file may only hold numpy arrays, "
            "scipy.sparse matrices and chumpy arrays"
        ) from None
    except ModelFileError:
        raise
    except Exception as exc:  # any failure while parsing untrusted bytes means a corrupt or foreign file
        raise ModelFileError(f"{source}: not a readable MANO model pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise ModelFileError(f"{source}: expected a pickled dict of model arrays; got {type(obj).__name__}")
    return {str(k): _convert(v, str(k), source) for k, v in obj.items()}


def load_mano_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read a MANO model pickle without importing chumpy and without running code from the file.

    Returns the file's dict with chumpy ``Ch`` values turned into numpy arrays and sparse matrices rebuilt as
    ``scipy.sparse.csc_matrix`` (or ``csr_matrix``); other values (arrays, strings) are returned as stored.
    Raises ModelFileError naming ``path`` when the file is missing, unreadable, corrupt, not a dict, or
    references any class or function outside the allow-list (see the module docstring).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"MANO model file {path} does not exist") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read MANO model file {path}: {exc}") from exc
    return loads_mano_pickle(data, str(path))
