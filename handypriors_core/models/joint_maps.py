"""Driver joint names -> URDF joint names (and values), from ``config/joint_maps/*.yaml``.

Different Allegro drivers publish the same 16 joints under different names (and, for the Wonik ROS 2
driver, in a different finger order: ``ah_joint00-03`` is the thumb). A :class:`JointMap` turns a
``sensor_msgs/JointState`` (names + positions) into the hand model's joint vector, ordered as
``URDFHand.joint_names``.

YAML format::

    name: wonik_ros2
    description: free text
    mapping:            # driver name -> URDF joint name (one-to-one)
      ah_joint00: joint_12.0
      ...
    sign:   {driver_name: -1.0}   # optional, default 1
    offset: {driver_name: 0.1}    # optional, default 0 [rad or m]

Values convert as ``urdf_value = sign * driver_value + offset``: use ``sign``/``offset`` when a driver's
zero or direction differs from the URDF's (none of the shipped maps needs it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..config import CONFIG_DIR, load_yaml
from ..errors import ConfigError, InvalidValueError, JointNameError, ShapeError

__all__ = ["JOINT_MAP_DIR", "JointMap"]

#: Where the shipped maps live (``config/joint_maps``); ``$HANDYPRIORS_CONFIG_DIR/joint_maps`` is searched first.
JOINT_MAP_DIR = CONFIG_DIR / "joint_maps"


def _map_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("HANDYPRIORS_CONFIG_DIR"):
        dirs.append(Path(os.environ["HANDYPRIORS_CONFIG_DIR"]) / "joint_maps")
    dirs.append(JOINT_MAP_DIR)
    return dirs


class JointMap:
    """One-to-one map from driver joint names to URDF joint names, with optional per-joint sign/offset.

    Attributes: ``name``, ``description``, ``mapping`` (dict driver -> URDF), ``sign``/``offset`` (dicts
    driver -> float, complete).
    """

    def __init__(
        self,
        name: str,
        mapping: Mapping[str, str],
        description: str = "",
        sign: Mapping[str, float] | None = None,
        offset: Mapping[str, float] | None = None,
    ):
        self.name = str(name)
        self.description = str(description)
        self.mapping: dict[str, str] = {str(k): str(v) for k, v in mapping.items()}
        targets = list(self.mapping.values())
        dup = sorted({t for t in targets if targets.count(t) > 1})
        if dup:
            raise ConfigError(f"joint map {self.name!r} maps several driver joints to {dup}")
        self.sign: dict[str, float] = {k: 1.0 for k in self.mapping}
        self.offset: dict[str, float] = {k: 0.0 for k in self.mapping}
        for label, given, store in (("sign", sign, self.sign), ("offset", offset, self.offset)):
            for k, v in (given or {}).items():
                if k not in self.mapping:
                    raise JointNameError(f"joint map {self.name!r}: {label} given for unmapped driver joint {k!r}")
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise ConfigError(f"joint map {self.name!r}: {label}[{k!r}] = {v!r} is not a number") from None
                if not math.isfinite(v) or (label == "sign" and v == 0.0):
                    raise ConfigError(f"joint map {self.name!r}: {label}[{k!r}] = {v} is not allowed")
                store[k] = v
        self._inverse = {v: k for k, v in self.mapping.items()}

    # ------------------------------------------------------------------------------------------ builders

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> JointMap:
        """Read a map file (format in the module docstring); ConfigError names the file when malformed."""
        data = load_yaml(path)
        unknown = set(data) - {"name", "description", "mapping", "sign", "offset"}
        if unknown:
            raise ConfigError(f"joint map {path}: unknown key(s) {sorted(unknown)}")
        mapping = data.get("mapping")
        if not isinstance(mapping, dict) or not mapping:
            raise ConfigError(f"joint map {path}: 'mapping' must be a non-empty mapping driver_name: urdf_name")
        for key in ("sign", "offset"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise ConfigError(f"joint map {path}: {key!r} must be a mapping driver_name: value")
        try:
            return cls(data.get("name", Path(path).stem), mapping, data.get("description", ""),
                       data.get("sign"), data.get("offset"))
        except (ConfigError, JointNameError) as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def identity(cls, joint_names: Sequence[str], name: str = "identity") -> JointMap:
        """Driver names equal the URDF names (e.g. the ROS 1 driver with our URDF)."""
        return cls(name, {n: n for n in joint_names}, "driver names are the URDF joint names")

    @staticmethod
    def available() -> list[str]:
        """Names of the shipped maps (``config/joint_maps/*.yaml`` stems), sorted."""
        names = set()
        for d in _map_dirs():
            if d.is_dir():
                names.update(p.stem for p in d.glob("*.yaml"))
        return sorted(names)

    @classmethod
    def shipped(cls, name: str) -> JointMap:
        """A shipped map by name (e.g. ``"wonik_ros2"``); ConfigError lists the available ones."""
        for d in _map_dirs():
            path = d / f"{name}.yaml"
            if path.is_file():
                return cls.from_yaml(path)
        raise ConfigError(f"no shipped joint map {name!r} (available: {', '.join(cls.available())})")

    @classmethod
    def best_match(cls, names: Iterable[str], hand_joint_names: Sequence[str] | None = None) -> JointMap:
        """The shipped map whose driver names cover most of ``names`` (e.g. a JointState's names).

        The winner must translate ``names`` into every URDF joint it maps (or every ``hand_joint_names``
        when given); otherwise JointNameError lists what each candidate missed. When ``hand_joint_names`` is
        given and ``names`` already contains them all, the identity map competes too.
        """
        names = set(names)
        candidates = [cls.shipped(n) for n in cls.available()]
        if hand_joint_names is not None:
            candidates.append(cls.identity(hand_joint_names))
        best, best_cover, misses = None, -1, []
        for cand in candidates:
            cover = len(names & set(cand.mapping))
            needed = set(hand_joint_names) if hand_joint_names is not None else set(cand.mapping.values())
            provided = {cand.mapping[n] for n in names if n in cand.mapping}
            missing = needed - provided
            if missing:
                misses.append(f"{cand.name}: missing {sorted(missing)[:4]}{'...' if len(missing) > 4 else ''}")
                continue
            if cover > best_cover:
                best, best_cover = cand, cover
        if best is None:
            raise JointNameError(
                f"no joint map covers the joint names {sorted(names)[:6]}{'...' if len(names) > 6 else ''} "
                f"({'; '.join(misses)}); write a config/joint_maps/<driver>.yaml"
            )
        return best

    # ------------------------------------------------------------------------------------------- queries

    @property
    def driver_names(self) -> list[str]:
        return list(self.mapping)

    @property
    def urdf_names(self) -> list[str]:
        return list(self.mapping.values())

    def urdf_name(self, driver_name: str) -> str:
        """URDF joint for ``driver_name``; JointNameError naming it when unmapped."""
        try:
            return self.mapping[driver_name]
        except KeyError:
            raise JointNameError(f"joint map {self.name!r} has no driver joint {driver_name!r}") from None

    def driver_name(self, urdf_name: str) -> str:
        """Driver joint for URDF joint ``urdf_name``; JointNameError naming it when unmapped."""
        try:
            return self._inverse[urdf_name]
        except KeyError:
            raise JointNameError(f"joint map {self.name!r} has no URDF joint {urdf_name!r}") from None

    def to_joint_vector(
        self,
        names: Sequence[str],
        positions,
        hand_joint_names: Sequence[str],
        ignore_unknown: bool = False,
    ):
        """Driver ``names`` with ``positions (..., N)`` -> URDF joint vector ``(..., J)`` in ``hand_joint_names`` order.

        ``positions`` may be a list, numpy array (-> float64 numpy array) or tensor (-> tensor of its dtype and
        device, differentiable). Names the map does not know raise JointNameError naming them (unless
        ``ignore_unknown``, e.g. a JointState that also carries arm joints); hand joints not supplied raise
        JointNameError listing them; NaN/inf raises InvalidValueError naming the joint.
        """
        names = [str(n) for n in names]
        is_tensor = isinstance(positions, torch.Tensor)
        pos = positions if is_tensor else np.asarray(positions, dtype=np.float64)
        if pos.ndim < 1 or pos.shape[-1] != len(names):
            raise ShapeError(
                f"Expected positions to have shape (..., {len(names)}) to match names; got {tuple(pos.shape)}"
            )
        unknown = [n for n in names if n not in self.mapping]
        if unknown and not ignore_unknown:
            raise JointNameError(f"joint map {self.name!r} does not know joint(s) {unknown}")
        col = {self.mapping[n]: i for i, n in enumerate(names) if n in self.mapping}
        missing = [h for h in hand_joint_names if h not in col]
        if missing:
            raise JointNameError(
                f"joint map {self.name!r}: no value for hand joint(s) {missing} "
                f"(driver names {[self._inverse.get(m, '?') for m in missing]})"
            )
        idx = [col[h] for h in hand_joint_names]
        drivers = [names[i] for i in idx]
        sign = [self.sign[d] for d in drivers]
        offset = [self.offset[d] for d in drivers]
        if is_tensor:
            sel = pos[..., idx]
            bad = ~torch.isfinite(sel)
            if bad.any():
                cols = torch.nonzero(bad.reshape(-1, len(idx)).any(0)).flatten().tolist()
                self._raise_nonfinite([drivers[c] for c in cols])
            s = torch.tensor(sign, dtype=sel.dtype, device=sel.device)
            o = torch.tensor(offset, dtype=sel.dtype, device=sel.device)
            return sel * s + o
        sel = pos[..., idx]
        bad = ~np.isfinite(sel)
        if bad.any():
            cols = np.nonzero(bad.reshape(-1, len(idx)).any(0))[0].tolist()
            self._raise_nonfinite([drivers[c] for c in cols])
        return sel * np.asarray(sign) + np.asarray(offset)

    def _raise_nonfinite(self, drivers: list[str]) -> None:
        pretty = ", ".join(f"{d} ({self.mapping[d]})" for d in drivers)
        raise InvalidValueError(f"joint position is NaN/inf for joint(s) {pretty}")

    def __repr__(self) -> str:
        return f"JointMap(name={self.name!r}, joints={len(self.mapping)})"
