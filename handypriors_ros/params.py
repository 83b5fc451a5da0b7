"""ROS parameters <-> settings dataclasses: the one place where they are mapped onto each other.

Two dataclasses hold everything the tracker node can be configured with:

- :class:`~handypriors_core.estimation.settings.TrackerSettings` (core), declared as nested parameters
  ``tracking.<component>.<field>`` (``tracking.filter.depth_std``, ``tracking.weights.lambda_mask``, ...);
- :class:`~.node_settings.NodeSettings`, the node-level parameters (``object_mesh``, ``object_frame``, ...).

Each leaf field becomes one parameter whose **type** comes from the field's annotation (``bool``, ``int``,
``float``, ``str``, ``Literal[...]`` -> string with its choices, ``list[Literal[...]]`` -> string array,
``list[float]`` -> double array), whose **default** is the dataclass default, whose **description** is the field's
entry in the class docstring's ``Attributes:`` section, and whose **range** is the field's own
(:mod:`.parameter_specs` derives them; ``dataclasses.field`` metadata, :func:`handypriors_core.config.ranged`: the
same range the dataclass checks in ``__post_init__``; ROS ranges are inclusive, so strict bounds such as "> 0" are
enforced by the dataclass). :data:`~.parameter_specs.TRACKING_RANGES` / ``NODE_RANGES`` are derived from that
metadata, not kept here. Values come from the parameter file (``config/allegro_tracking.yaml``: ``/**:
ros__parameters: tracking: ...``), ``-p`` overrides and live ``set_parameters`` calls.

Validation is the dataclasses' own: :class:`ParameterBinding` builds the dataclasses from the parameter values
at start (an invalid value raises :class:`~handypriors_core.errors.ConfigError` with the dataclass's message,
so the node refuses to start) and again for every live update, in an ``add_on_set_parameters_callback``
(an invalid update is rejected with that message and nothing changes). rclpy itself rejects wrong types,
out-of-range values and writes to read-only parameters first. Integers given for floating-point parameters
(``-p tracking.refine.gamma:=1``) are accepted as floats. An empty list in a YAML file (``initial_pose: []``)
reaches rclpy as "not set" and reads as an empty list here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from handypriors_core.errors import HandyPriorsError
from handypriors_core.estimation.settings import TrackerSettings

from .node_settings import NodeSettings, validate_runtime
from .parameter_specs import (
    node_parameter_specs,
    settings_from_values,
    tracking_parameter_specs,
)

__all__ = ["ParameterBinding"]


ChangeCallback = Callable[[TrackerSettings, NodeSettings, set], None]


class ParameterBinding:
    """Declares the tracking and node parameters on ``node`` and keeps the settings dataclasses in sync.

    At construction every parameter is declared (values from the parameter file and ``-p`` overrides), the
    dataclasses are built and :func:`~.node_settings.validate_runtime` runs: any problem raises ConfigError (or rclpy's
    parameter exception), so the node does not start. Afterwards every ``set_parameters`` is validated the same
    way in an on-set callback; a valid update replaces :attr:`tracking` / :attr:`node` and calls
    ``on_change(tracking, node, changed_names)`` after the values are stored.

    Attributes:
        tracking: current :class:`TrackerSettings`; node: current :class:`NodeSettings` (replaced, never mutated).
        specs: ``{name: ParameterSpec}`` of every declared parameter.
    """

    def __init__(self, node: Any, on_change: ChangeCallback | None = None) -> None:
        self._node = node
        self._on_change = on_change
        self._tracking_specs = tracking_parameter_specs()
        self._node_specs = node_parameter_specs()
        self.specs = {s.name: s for s in self._tracking_specs + self._node_specs}
        self._coerce_overrides()
        values = {}
        for spec in self.specs.values():
            default = spec.ros_value(spec.default)
            second = spec.type if (spec.is_array and not default) else default
            value = node.declare_parameter(spec.name, second, spec.descriptor()).value
            if value is None and spec.is_array:  # unset (an empty YAML list): store a typed empty list
                node.set_parameters([Parameter(spec.name, spec.type, [])])
                value = []
            values[spec.name] = value
        self.tracking, self.node = self._build(values, live=False)
        self._pending: tuple[TrackerSettings, NodeSettings, set] | None = None
        # Humble's rclpy has only the on-set callback: it then also applies the accepted values (and integers
        # for float parameters are rejected by rclpy on live sets, as Humble does)
        pre_set = getattr(node, "add_pre_set_parameters_callback", None)
        post_set = getattr(node, "add_post_set_parameters_callback", None)
        self.humble_fallback = pre_set is None or post_set is None
        if pre_set is not None and not self.humble_fallback:
            pre_set(self._pre_set)
        node.add_on_set_parameters_callback(self._on_set)
        if not self.humble_fallback:
            post_set(self._post_set)

    # -- helpers ----------------------------------------------------------------------------------------
    def _as_declared(self, parameter: Parameter) -> Parameter:
        """Integers given for a DOUBLE (array) parameter of ours as floats; anything else unchanged."""
        spec = self.specs.get(parameter.name)
        if spec is not None and spec.type == Parameter.Type.DOUBLE and parameter.type_ == Parameter.Type.INTEGER:
            return Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
        if (spec is not None and spec.type == Parameter.Type.DOUBLE_ARRAY
                and parameter.type_ == Parameter.Type.INTEGER_ARRAY):
            return Parameter(parameter.name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in parameter.value])
        return parameter

    def _coerce_overrides(self) -> None:
        """Integers from the parameter file / ``-p`` for DOUBLE parameters become floats."""
        overrides = getattr(self._node, "_parameter_overrides", None)
        if not isinstance(overrides, dict):
            return
        for name in self.specs:
            if overrides.get(name) is not None:
                overrides[name] = self._as_declared(overrides[name])

    def values(self) -> dict[str, Any]:
        """Current ``{name: value}`` of every bound parameter."""
        return {name: self._node.get_parameter(name).value for name in self.specs}

    def _build(self, values: Mapping[str, Any], live: bool) -> tuple[TrackerSettings, NodeSettings]:
        tracking = settings_from_values(TrackerSettings, self._tracking_specs, values, "invalid tracking parameters")
        node = settings_from_values(NodeSettings, self._node_specs, values, "invalid node parameters")
        validate_runtime(tracking, node, live=live)
        return tracking, node

    # -- callbacks -------------------------------------------------------------------------------------
    def _pre_set(self, parameters: list[Parameter]) -> list[Parameter]:
        return [self._as_declared(p) for p in parameters]

    def _on_set(self, parameters: list[Parameter]) -> SetParametersResult:
        ours = [p for p in parameters if p.name in self.specs]
        if not ours:
            return SetParametersResult(successful=True)
        values = self.values()
        for p in ours:
            values[p.name] = p.value
        try:
            tracking, node = self._build(values, live=True)
        except HandyPriorsError as exc:
            self._pending = None
            return SetParametersResult(successful=False, reason=str(exc))
        self._pending = (tracking, node, {p.name for p in ours})
        if self.humble_fallback:  # no post-set callback: apply now (rclpy stores the values right after)
            self._post_set(parameters)
        return SetParametersResult(successful=True)

    def _post_set(self, parameters: list[Parameter]) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self.tracking, self.node, changed = pending
        if self._on_change is not None:
            self._on_change(self.tracking, self.node, changed)
