"""Typed settings: dataclasses built from ``config/*.yaml``.

Every component owns one frozen-or-plain dataclass of settings with documented defaults. This module
turns nested dicts (from YAML) into those dataclasses, checking keys and types, so a misspelt key is
an error rather than a silently ignored value.

    settings = load_settings(RenderSettings, "config/render.yaml", section="render")
    settings = settings_from_dict(RenderSettings, {"sigma": 1e-4})

A numeric field's valid range is stated once, in the field's metadata (:func:`ranged`): the dataclass checks it
(:func:`check_ranges` in ``__post_init__``) and the ROS node publishes it in its parameter descriptors
(``handypriors_ros.params`` reads :func:`settings_ranges`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .errors import ConfigError

T = TypeVar("T")

#: Folder of the YAML files shipped with the package (source checkout or installed share/).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def require(condition: bool, message: str, error: type[Exception] = ConfigError) -> None:
    """Raise ``error(message)`` (ConfigError by default) unless ``condition``: the settings dataclasses'
    ``__post_init__`` checks, one line each (``require(self.bins >= 2, f"bins must be >= 2; got {self.bins}")``)."""
    if not condition:
        raise error(message)


@dataclasses.dataclass(frozen=True)
class ValueRange:
    """Valid values of a numeric setting: ``low <= value <= high``, ``<`` on an open end (finite values only)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: Any) -> bool:
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        if not math.isfinite(v):
            return False
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    def __iter__(self):
        """``low, high = value_range``."""
        return iter((self.low, self.high))

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


#: Key of a field's :class:`ValueRange` in ``dataclasses.field(metadata=...)``.
RANGE = "range"


def ranged(default: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Any:
    """A dataclass field with ``default`` whose valid values are ``[low, high]`` (``(`` / ``)`` where open).

    ``low_open`` says "> low" (e.g. a standard deviation > 0); upper bounds of quantities without a natural one
    are generous sanity limits. ROS parameter ranges are inclusive: they show ``[low, high]`` and the dataclass
    rejects an open end itself.
    """
    return dataclasses.field(default=default, metadata={RANGE: ValueRange(low, high, low_open, high_open)})


def field_ranges(cls_or_instance: Any) -> dict[str, ValueRange]:
    """``{field name: ValueRange}`` of the ranged fields of a dataclass (not recursing)."""
    return {f.name: f.metadata[RANGE] for f in dataclasses.fields(cls_or_instance) if RANGE in f.metadata}


def settings_ranges(cls: type, prefix: str = "") -> dict[str, ValueRange]:
    """``{dotted path: ValueRange}`` of every ranged leaf field of dataclass ``cls``, nested dataclasses recursed
    (``{"roi.size": [16, 1024], ...}`` for ``TrackerSettings``)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, ValueRange] = {}
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(settings_ranges(hints[f.name], f"{path}."))
        elif RANGE in f.metadata:
            out[path] = f.metadata[RANGE]
    return out


def range_problems(settings: Any, section: str = "") -> list[str]:
    """One message per ranged field of ``settings`` whose value is outside its range."""
    where = f"{section}." if section else ""
    return [f"{where}{name} must be in {valid}; got {getattr(settings, name)!r}"
            for name, valid in field_ranges(settings).items() if not valid.contains(getattr(settings, name))]


def check_ranges(settings: Any, section: str = "") -> None:
    """Raise ConfigError naming every ranged field of ``settings`` outside its range (``section.name``)."""
    problems = range_problems(settings, section)
    if problems:
        raise ConfigError("; ".join(problems))


def find_config(name: str) -> Path:
    """Path of a shipped config file ``name`` (e.g. ``"allegro_tracking.yaml"``).

    Looks in ``$HANDYPRIORS_CONFIG_DIR``, the source checkout's ``config/``, then the ament share
    directory of ``handypriors_ros`` when installed with colcon.
    """
    candidates = []
    if os.environ.get("HANDYPRIORS_CONFIG_DIR"):
        candidates.append(Path(os.environ["HANDYPRIORS_CONFIG_DIR"]) / name)
    candidates.append(CONFIG_DIR / name)
    try:  # installed with colcon: share/handypriors_ros/config
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        candidates.append(Path(get_package_share_directory("handypriors_ros")) / "config" / name)
    except Exception:  # noqa: BLE001 - ament index absent or package not installed
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"config file {name!r} not found (looked in: {', '.join(str(c) for c in candidates)})")


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML file into a dict; ConfigError names the file on any failure."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level; got {type(data).__name__}")
    return data


def load_settings(cls: type[T], path: str | os.PathLike, section: str | None = None) -> T:
    """Build ``cls`` from the YAML file ``path`` (optionally from its top-level ``section``)."""
    data = load_yaml(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"config file {path} has no section {section!r} (has: {sorted(data)})")
        data = data[section] or {}
    try:
        return settings_from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def settings_from_dict(cls: type[T], data: Mapping[str, Any] | None, _where: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping, checking keys and converting types.

    Unknown keys raise ConfigError; missing keys keep the dataclass defaults. Nested dataclass
    fields take nested mappings. ``__post_init__`` validation of ``cls`` still runs.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {_where or cls.__name__} (known: {sorted(fields)})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{_where}{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid {_where or cls.__name__}: {exc}") from exc


def settings_to_dict(settings: Any) -> dict:
    """Nested dict of a settings dataclass (for YAML dumps and ROS parameter declaration)."""
    return dataclasses.asdict(settings)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping; got {value!r}")
        return settings_from_dict(tp, value, _where=f"{where}.")
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {args}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}; got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list; got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where} must have {len(args)} entries; got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        out = [_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping; got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer; got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number; got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string; got {value!r}")
        return value
    return value
