"""ROS parameters derived from settings dataclasses: one :class:`ParameterSpec` per leaf field.

A field's **type** comes from its annotation (``bool``, ``int``, ``float``, ``str``, ``Literal[...]`` -> string
with its choices, ``list[Literal[...]]`` -> string array, ``list[float]`` -> double array), its **default** is the
dataclass default, its **description** the field's entry in the class docstring's ``Attributes:`` section
(:func:`attribute_docs`), and its **range** the field's own (``dataclasses.field`` metadata,
:func:`handypriors_core.config.ranged`). Nested dataclasses become dotted names (``tracking.filter.depth_std``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter

from handypriors_core.config import ValueRange, settings_from_dict, settings_ranges
from handypriors_core.errors import ConfigError
from handypriors_core.estimation.settings import TrackerSettings

from .node_settings import READ_ONLY_NODE_PARAMETERS, NodeSettings

__all__ = [
    "NODE_RANGES",
    "TRACKING_PREFIX",
    "TRACKING_RANGES",
    "ParameterSpec",
    "attribute_docs",
    "node_parameter_specs",
    "parameters_from_settings",
    "settings_from_values",
    "settings_specs",
    "tracking_parameter_specs",
]

#: Name prefix of the TrackerSettings parameters.
TRACKING_PREFIX = "tracking"
#: Ranges of the numeric TrackerSettings fields (dotted path below ``tracking``), from the fields' metadata.
TRACKING_RANGES: dict[str, ValueRange] = settings_ranges(TrackerSettings)
#: Ranges of the numeric NodeSettings fields, from the fields' metadata.
NODE_RANGES: dict[str, ValueRange] = settings_ranges(NodeSettings)


@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter mapped onto one dataclass field.

    Attributes:
        name: full parameter name (``tracking.filter.depth_std``).
        path: attribute path in the dataclass (``("filter", "depth_std")``).
        type: rclpy parameter type.
        default: the dataclass default (lists as lists).
        description: from the class docstring.
        choices: allowed strings (``Literal`` fields and lists of them), else empty.
        value_range: inclusive ``(low, high)`` for numbers (the field's range), else None.
        read_only: settable only at start.
    """

    name: str
    path: tuple[str, ...]
    type: Parameter.Type
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    read_only: bool = False

    @property
    def is_array(self) -> bool:
        return self.type in (Parameter.Type.STRING_ARRAY, Parameter.Type.DOUBLE_ARRAY,
                             Parameter.Type.INTEGER_ARRAY, Parameter.Type.BOOL_ARRAY)

    def descriptor(self) -> ParameterDescriptor:
        """The ``ParameterDescriptor`` (description, type, range, choices in ``additional_constraints``)."""
        descriptor = ParameterDescriptor(name=self.name, type=self.type.value, description=self.description,
                                         read_only=self.read_only)
        constraints = []
        if self.choices:
            constraints.append(("each entry one of: " if self.is_array else "one of: ") + ", ".join(self.choices))
        if self.value_range is not None:
            low, high = self.value_range
            if self.type == Parameter.Type.INTEGER:
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high),
                                                                      step=0.0)]
            constraints.append(f"in [{low:g}, {high:g}]")
        descriptor.additional_constraints = "; ".join(constraints)
        return descriptor

    def ros_value(self, value: Any) -> Any:
        """A dataclass value as rclpy wants it (lists as lists of the element type)."""
        if self.is_array:
            return list(value)
        return value

    def python_value(self, value: Any) -> Any:
        """A parameter value as the dataclass wants it (``None`` = unset array -> ``[]``)."""
        if self.is_array:
            return [] if value is None else list(value)
        return value


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data):`~?\.?([^`]+)`")


def _clean(text: str) -> str:
    text = _ROLE.sub(lambda m: m.group(1).split(".")[-1], text)
    return re.sub(r"\s+", " ", text.replace("``", "")).strip()


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of ``cls``'s docstring (Google style).

    An entry ``a, b: text`` documents both fields; continuation lines are indented deeper than the entry.
    """
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return {}
    entries: list[tuple[list[str], list[str]]] = []
    base = None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            break
        if base is None:
            base = indent
        match = re.match(r"\s*([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*)\s*:\s*(.*)$", line)
        if indent == base and match:
            entries.append(([n.strip() for n in match.group(1).split(",")], [match.group(2)]))
        elif entries:
            entries[-1][1].append(line.strip())
    return {name: _clean(" ".join(text)) for names, text in entries for name in names}


_SCALAR_TYPES = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
                 str: Parameter.Type.STRING}
_ARRAY_TYPES = {bool: Parameter.Type.BOOL_ARRAY, int: Parameter.Type.INTEGER_ARRAY,
                float: Parameter.Type.DOUBLE_ARRAY, str: Parameter.Type.STRING_ARRAY}


def _string_choices(hint: Any) -> tuple[str, ...] | None:
    """The strings of a ``Literal["a", "b"]`` annotation, else None."""
    args = typing.get_args(hint)
    return tuple(args) if typing.get_origin(hint) is Literal and all(isinstance(a, str) for a in args) else None


def _leaf_type(hint: Any, where: str) -> tuple[Parameter.Type, tuple[str, ...]]:
    """rclpy type and choices of a leaf annotation."""
    if hint in _SCALAR_TYPES:
        return _SCALAR_TYPES[hint], ()
    choices = _string_choices(hint)
    if choices is not None:
        return Parameter.Type.STRING, choices
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (list, tuple) and args:
        inner = args[0]
        if inner in _ARRAY_TYPES:
            return _ARRAY_TYPES[inner], ()
        choices = _string_choices(inner)
        if choices is not None:
            return Parameter.Type.STRING_ARRAY, choices
    raise TypeError(f"settings field {where} has annotation {hint!r}, which has no ROS parameter type")


def settings_specs(cls: type, prefix: str = "", defaults: Any = None,
                   read_only: Iterable[str] = ()) -> list[ParameterSpec]:
    """One :class:`ParameterSpec` per leaf field of dataclass ``cls`` (nested dataclasses recursed).

    ``prefix``: parameter name prefix (``"tracking"``); ``defaults``: an instance whose values are the defaults
    (``cls()`` if None); ``read_only``: dotted paths. Ranges are the fields' own (``ranged`` metadata).
    """
    ranges = settings_ranges(cls)
    read_only = set(read_only)
    defaults = defaults if defaults is not None else cls()
    specs: list[ParameterSpec] = []

    def walk(klass: type, instance: Any, path: tuple[str, ...]) -> None:
        hints = typing.get_type_hints(klass)
        docs = attribute_docs(klass)
        for f in dataclasses.fields(klass):
            if not f.init:
                continue
            value = getattr(instance, f.name)
            here = path + (f.name,)
            dotted = ".".join(here)
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], value, here)
                continue
            ros_type, choices = _leaf_type(hints[f.name], f"{klass.__name__}.{f.name}")
            description = docs.get(f.name, "")
            specs.append(ParameterSpec(
                name=".".join(filter(None, (prefix, dotted))), path=here, type=ros_type,
                default=list(value) if isinstance(value, (list, tuple)) else value,
                description=description, choices=choices,
                value_range=(ranges[dotted].low, ranges[dotted].high) if dotted in ranges else None,
                read_only=dotted in read_only,
            ))

    walk(cls, defaults, ())
    return specs


def tracking_parameter_specs() -> list[ParameterSpec]:
    """The ``tracking.*`` parameters (every TrackerSettings leaf field)."""
    return settings_specs(TrackerSettings, TRACKING_PREFIX)


def node_parameter_specs() -> list[ParameterSpec]:
    """The node-level parameters (every NodeSettings field)."""
    return settings_specs(NodeSettings, "", read_only=READ_ONLY_NODE_PARAMETERS)


def _nested(specs: Sequence[ParameterSpec], values: Mapping[str, Any]) -> dict:
    data: dict = {}
    for spec in specs:
        if spec.name not in values:
            continue
        target = data
        for part in spec.path[:-1]:
            target = target.setdefault(part, {})
        target[spec.path[-1]] = spec.python_value(values[spec.name])
    return data


def settings_from_values(cls: type, specs: Sequence[ParameterSpec], values: Mapping[str, Any],
                         label: str = "") -> Any:
    """Build ``cls`` from ``{parameter name: value}`` (missing names keep their defaults).

    Raises :class:`ConfigError` carrying the dataclass's own message (prefixed by ``label``).
    """
    try:
        return settings_from_dict(cls, _nested(specs, values))
    except (ConfigError, TypeError, ValueError) as exc:
        message = str(exc)
        raise ConfigError(f"{label}: {message}" if label else message) from None


def parameters_from_settings(settings: Any, specs: Sequence[ParameterSpec] | None = None) -> list[Parameter]:
    """``settings`` (TrackerSettings or NodeSettings) as rclpy Parameters, e.g. for ``parameter_overrides``."""
    if specs is None:
        specs = tracking_parameter_specs() if isinstance(settings, TrackerSettings) else node_parameter_specs()
    out = []
    for spec in specs:
        value = settings
        for part in spec.path:
            value = getattr(value, part)
        out.append(Parameter(spec.name, spec.type, spec.ros_value(value)))
    return out
