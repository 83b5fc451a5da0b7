"""What :class:`~.urdf_hand.URDFHand` and :class:`~.mano.ManoHand` share of the hand interface: name look-ups.

A hand model names its ``joint_names`` (the ``J`` coordinates of ``q (B, J)``) and its ``link_names`` (the
``L`` frames of ``forward_kinematics``); :class:`HandNames` gives both models the same counts and
name -> index look-ups, raising :class:`~handypriors_core.errors.JointNameError` that names the unknown name
and lists the known ones. A model sets ``joint_names`` / ``link_names`` and calls :meth:`HandNames._index_names`
in its constructor (or builds ``_joint_idx`` / ``_link_idx`` itself); ``_joint_noun`` / ``_link_noun`` say how its
errors call them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import JointNameError

__all__ = ["HandNames"]

_LISTED = 24  # names listed in an error message at most


def _lookup(index: dict[str, int], name: str, noun: tuple[str, str], names: Sequence[str]) -> int:
    try:
        return index[name]
    except KeyError:
        listed = ", ".join(names[:_LISTED]) + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")
        raise JointNameError(f"unknown {noun[0]} {name!r} ({noun[1]}: {listed})") from None


class HandNames:
    """Mixin: ``num_joints``, ``num_links``, :meth:`joint_index`, :meth:`link_index` over the model's names."""

    joint_names: list[str]
    link_names: list[str]
    #: (singular, plural) naming a joint coordinate / a link in error messages
    _joint_noun: tuple[str, str] = ("joint", "actuated joints")
    _link_noun: tuple[str, str] = ("link", "links")

    def _index_names(self) -> None:
        """Build the look-up tables; call once ``joint_names`` and ``link_names`` are set."""
        self._joint_idx = {n: i for i, n in enumerate(self.joint_names)}
        self._link_idx = {n: i for i, n in enumerate(self.link_names)}

    @property
    def num_joints(self) -> int:
        """Number of joint coordinates ``J`` (the last dimension of ``joint_angles``)."""
        return len(self.joint_names)

    @property
    def num_links(self) -> int:
        """Number of link frames ``L`` (the second dimension of ``forward_kinematics``)."""
        return len(self.link_names)

    def link_index(self, name: str) -> int:
        """Index of link ``name`` in ``link_names``; JointNameError (a KeyError) naming it when unknown."""
        return _lookup(self._link_idx, name, self._link_noun, self.link_names)

    def joint_index(self, name: str) -> int:
        """Index of joint coordinate ``name`` in ``joint_names``; JointNameError naming it when unknown."""
        return _lookup(self._joint_idx, name, self._joint_noun, self.joint_names)
