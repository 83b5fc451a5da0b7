"""The one modality interface: residuals ``r``, analytic Jacobians ``J`` and robust weights ``w``.

Every observation of the object pose (sparse depth, contacts, ...) is a function ``r(object2camera)`` of the
pose, written once in torch. Its users:

- the EKF and the Gauss-Newton refinement consume its linearisation :class:`ResidualBlock` ``(r, J, w)``
  (``r`` evaluated by that function, ``J = dr/d delta`` in closed form over the pose tangent of
  :mod:`.pose_state`: ``R <- exp([phi]x) R``, ``t <- t + rho``, ``delta = (rho [m], phi [rad])``);
- the Adam refiner's loss is the robust sum of the same function (:func:`robust_loss`), differentiated by
  autodiff.

Sign: ``r`` is *prediction minus measurement* (0 when the pose explains the data). Linearised,
``r(x [+] delta) ~= r + J delta``; an EKF sees the innovation ``y = -r`` and ``H = J``.

Closed-form Jacobians of the two point models every modality is built from (camera-frame vectors,
``t`` the object origin in the camera frame):

- a point rigidly attached to the object, ``p = R p_obj + t``: ``dp/d delta = [I, -[p - t]x]``; projected,
  ``d(u, v)/dp = [[fx / z, 0, -fx x / z^2], [0, fy / z, -fy y / z^2]]`` (:func:`reprojection_jacobian`);
- the signed distance of a fixed camera-frame point ``c`` to the posed object, with outward normal ``n``:
  ``dd/d delta = [-n^T, (n x (c - t))^T]``; where ``c = c(theta)`` is a point of a hand whose parameters
  ``theta`` are estimated too (MANO), the row gains the block ``n^T dc/dtheta`` (:func:`hand_point_jacobian`,
  ``dc/dtheta`` by autodiff of the hand's forward kinematics).

The signed-distance terms of every estimator (the object filter's contacts, the refiner's, the hand-object
optimizer's and the contact refiner's penetration, the hand-object EKF's contact prior, the contact refiner's
distance targets) are :func:`hand_point_residuals` of the object SDF's distances; every robust penalty is
:func:`robust_loss` (IRLS weights :func:`robust_weights`). Callers reach them through this module
(``residuals.hand_point_residuals``), so there is one implementation to test and to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import InvalidValueError

__all__ = [
    "NormalEquations",
    "ResidualBlock",
    "RobustKind",
    "hand_parameter_jacobian",
    "hand_point_jacobian",
    "hand_point_residuals",
    "penetration_residuals",
    "reprojection_jacobian",
    "reprojection_residuals",
    "robust_loss",
    "robust_loss_squared",
    "robust_weights",
    "sdf_point_jacobian",
    "stack_normal_equations",
]

_F64 = torch.float64
RobustKind = Literal["huber", "tukey", "cauchy", "geman_mcclure", "charbonnier", "none"]


@dataclass(frozen=True)
class ResidualBlock:
    """One modality's linearisation at a pose (float64, CPU or the scene's device; the iterated update reads it as
    CPU numpy arrays, for which the methods below work alike).

    Attributes:
        name: the modality.
        residual: ``(k,)`` prediction minus measurement (units of the modality: metres, pixels, ...).
        jacobian: ``(k, 6)`` ``d residual / d delta`` over the pose tangent ``(rho [m], phi [rad])``; ``(k, D)``
            over the parameters of a modality of other states (the hand calibration: ``6 + J``).
        weight: ``(k,)`` robust (IRLS) weights in [0, 1].
        std: per-residual noise standard deviation (same units as ``residual``) the update weighs the block
            with.
        noise_floor: smallest per-residual noise the covariance assumes (quantisation, model error; units of
            ``residual``); with ``correlation``, see :meth:`variance_factor`.
        correlation: how many residuals carry one independent residual's information (>= 1: neighbouring
            pixels / surface points share their errors); the covariance is inflated by it.
    """

    name: str
    residual: torch.Tensor
    jacobian: torch.Tensor
    weight: torch.Tensor
    std: float
    noise_floor: float = 0.0
    correlation: float = 1.0

    def __post_init__(self) -> None:
        k = self.residual.shape[0]
        if self.residual.ndim != 1 or self.jacobian.ndim != 2 or self.jacobian.shape[0] != k \
                or self.weight.shape != (k,):
            raise InvalidValueError(f"ResidualBlock {self.name!r}: expected residual (k,), jacobian (k, D), weight "
                                    f"(k,); got {tuple(self.residual.shape)}, {tuple(self.jacobian.shape)}, "
                                    f"{tuple(self.weight.shape)}")
        if not self.std > 0:
            raise InvalidValueError(f"ResidualBlock {self.name!r}: std must be > 0; got {self.std}")
        if not (self.noise_floor >= 0 and self.correlation >= 1):
            raise InvalidValueError(f"ResidualBlock {self.name!r}: noise_floor must be >= 0 and correlation >= 1; "
                                    f"got {self.noise_floor}, {self.correlation}")

    @property
    def count(self) -> int:
        """Number of residuals ``k``."""
        return int(self.residual.shape[0])

    def normal_equations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Lambda (D, D), g (D,))`` = ``J^T W J / std^2`` and ``J^T W r / std^2``."""
        Jw = self.jacobian * (self.weight / self.std ** 2)[:, None]
        return Jw.T @ self.jacobian, Jw.T @ self.residual

    def noise_std(self, residual: torch.Tensor | None = None, dof: int = 6) -> float:
        """Per-residual noise standard deviation estimated from the block's own residuals (robust weights kept):
        ``sqrt(sum w r^2 / (sum w - dof))`` with ``residual (k,)`` (default: the block's; pass the residuals at
        the final iterate), at least :attr:`noise_floor`."""
        r = self.residual if residual is None else residual
        w = self.weight
        used = float(w.sum())
        return _estimated_noise(used, float((w * r * r).sum()) if used > dof else 0.0, self.std, self.noise_floor,
                                dof)

    def variance_factor(self, residual: torch.Tensor | None = None, dof: int = 6) -> float:
        """Ratio of the real noise variance to the one the update weighed the block with: ``correlation *
        noise_std^2 / std^2`` (1 when the configured ``std`` is right and the residuals are independent)."""
        return self.correlation * self.noise_std(residual, dof) ** 2 / self.std ** 2


def _estimated_noise(weight_sum: float, square_sum: float, std: float, noise_floor: float, dof: int) -> float:
    """``sqrt(sum w r^2 / (sum w - dof))`` from its sums, at least ``noise_floor``; ``max(std, noise_floor)`` when
    the weights do not exceed ``dof`` (:meth:`ResidualBlock.noise_std`)."""
    if weight_sum <= dof:
        return max(std, noise_floor)
    return max((square_sum / (weight_sum - dof)) ** 0.5, noise_floor)


class NormalEquations:
    """A linearisation ``(r, J, w)`` with its weighted normal equations, in float64 numpy: the iterated update's
    form of a :class:`ResidualBlock` (CPU modalities build it in one pass, :meth:`build`; any block converts,
    :meth:`from_block`).

    Attributes:
        name, std, noise_floor, correlation: as :class:`ResidualBlock`.
        residual: ``(k,)``; rows: ``(D, k)`` the Jacobian transposed, ``J^T``; weight: ``(k,)`` robust weights.
        information: ``(D, D)`` ``J^T W J``; vector: ``(D,)`` ``J^T W r`` (weights only, not divided by ``std^2``).
        weight_sum: ``sum w``; square_sum: ``sum w r^2``.
    """

    __slots__ = (
        "correlation",
        "information",
        "name",
        "noise_floor",
        "residual",
        "rows",
        "square_sum",
        "std",
        "vector",
        "weight",
        "weight_sum",
    )

    def __init__(self, name: str, residual: np.ndarray, rows: np.ndarray, weight: np.ndarray, std: float,
                 noise_floor: float, correlation: float, information: np.ndarray, vector: np.ndarray,
                 weight_sum: float, square_sum: float) -> None:
        self.name, self.residual, self.rows, self.weight = name, residual, rows, weight
        self.std, self.noise_floor, self.correlation = std, noise_floor, correlation
        self.information, self.vector, self.weight_sum, self.square_sum = information, vector, weight_sum, square_sum

    @classmethod
    def build(cls, name: str, residual: np.ndarray, rows: np.ndarray, weight: np.ndarray, std: float,
              noise_floor: float = 0.0, correlation: float = 1.0) -> NormalEquations:
        """From ``residual (k,)``, ``rows = J^T (D, k)`` and ``weight (k,)`` (float64 numpy): the sums computed."""
        rw = rows * weight
        wr = weight * residual
        return cls(name, residual, rows, weight, std, noise_floor, correlation, rw @ rows.T, rows @ wr,
                   float(weight.sum()), float(wr @ residual))

    @classmethod
    def from_block(cls, block: ResidualBlock) -> NormalEquations:
        """The normal equations of ``block`` (tensors on any device, or numpy arrays)."""
        def arr(t):
            return t.detach().to("cpu", _F64).numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)

        return cls.build(block.name, arr(block.residual), arr(block.jacobian).T, arr(block.weight), block.std,
                         block.noise_floor, block.correlation)

    @property
    def count(self) -> int:
        """Number of residuals ``k``."""
        return int(self.residual.shape[0])

    def scaled(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Lambda (D, D), g (D,))`` = ``J^T W J / std^2`` and ``J^T W r / std^2`` (as
        :meth:`ResidualBlock.normal_equations`)."""
        s2 = self.std ** 2
        return self.information / s2, self.vector / s2

    def with_std(self, std: float) -> NormalEquations:
        """The same block weighed with noise ``std``."""
        return NormalEquations(self.name, self.residual, self.rows, self.weight, std, self.noise_floor,
                               self.correlation, self.information, self.vector, self.weight_sum, self.square_sum)

    def moved(self, delta: np.ndarray) -> NormalEquations:
        """The block at ``x [+] delta`` to first order: ``r + J delta``, the same Jacobian and weights."""
        return NormalEquations.build(self.name, self.residual + delta @ self.rows, self.rows, self.weight, self.std,
                                     self.noise_floor, self.correlation)

    def residual_at(self, delta: np.ndarray) -> np.ndarray:
        """``(k,)`` residuals at ``x [+] delta`` to first order."""
        return self.residual + delta @ self.rows

    def noise_std(self, residual: np.ndarray | None = None, dof: int = 6) -> float:
        """:meth:`ResidualBlock.noise_std` (``residual (k,)``: default the block's own)."""
        square_sum = self.square_sum if residual is None else float((self.weight * residual) @ residual)
        return _estimated_noise(self.weight_sum, square_sum, self.std, self.noise_floor, dof)

    def variance_factor(self, residual: np.ndarray | None = None, dof: int = 6) -> float:
        """:meth:`ResidualBlock.variance_factor`."""
        return self.correlation * self.noise_std(residual, dof) ** 2 / self.std ** 2


def stack_normal_equations(blocks: list[ResidualBlock]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the blocks' normal equations ``(Lambda (6, 6), g (6,))`` (zeros when there are none)."""
    Lam = torch.zeros(6, 6, dtype=_F64)
    g = torch.zeros(6, dtype=_F64)
    for block in blocks:
        L, b = block.normal_equations()
        Lam, g = Lam + L.to(Lam), g + b.to(g)
    return Lam, g


def robust_weights(residual: torch.Tensor, scale: float, kind: RobustKind) -> torch.Tensor:
    """IRLS weights ``w(r) = rho'(r) / r`` in [0, 1] of the robust function ``kind`` with scale ``c``.

    ``huber``: 1 inside ``c``, ``c / |r|`` outside; ``tukey``: ``(1 - (r/c)^2)^2`` inside ``c``, 0 outside;
    ``cauchy``: ``1 / (1 + (r/c)^2)``; ``geman_mcclure``: ``1 / (1 + (r/c)^2)^2``; ``charbonnier``:
    ``1 / sqrt(1 + (r/c)^2)``; ``none``: 1. ``residual (k,)`` is a tensor or a numpy array (the result is of the
    same kind).
    """
    a = abs(residual / scale)
    if kind == "huber":
        return 1.0 / a.clip(min=1.0)
    if kind == "tukey":
        inside = a.clip(max=1.0)
        return (1 - inside * inside) ** 2
    if kind == "cauchy":
        return 1.0 / (1 + a * a)
    if kind == "geman_mcclure":
        return 1.0 / (1 + a * a) ** 2
    if kind == "charbonnier":
        return 1.0 / (1 + a * a) ** 0.5
    if kind == "none":
        return a ** 0  # 1 everywhere (x^0 = 1 for every x, inf and NaN included)
    raise InvalidValueError(f"unknown robust function {kind!r}")


def robust_loss(residual: torch.Tensor, scale: float, kind: RobustKind) -> torch.Tensor:
    """``rho(r)`` elementwise (differentiable), normalised so that ``rho(r) ~= r^2 / (2 c^2)`` near 0.

    The IRLS weights of :func:`robust_weights` are ``rho'(r) / r`` up to the constant ``1 / c^2``.
    """
    if kind == "huber":
        a = residual / scale
        absa = a.abs()
        return torch.where(absa <= 1, 0.5 * a * a, absa - 0.5)
    return robust_loss_squared(residual * residual, scale, kind)


def robust_loss_squared(squared: torch.Tensor, scale: float, kind: RobustKind) -> torch.Tensor:
    """:func:`robust_loss` of residuals given by their squared norms ``|r|^2`` (any shape; vector residuals such as
    2D keypoint errors [px^2]): ``rho(|r|)`` without a square root where the function needs none.

    ``tukey``: ``(1 - (1 - a^2)^3) / 6`` inside, ``1/6`` outside; ``cauchy``: ``log(1 + a^2) / 2``;
    ``geman_mcclure``: ``a^2 / (2 (1 + a^2))``; ``charbonnier``: ``sqrt(1 + a^2) - 1``; ``none``: ``a^2 / 2``
    (``a = |r| / c``).
    """
    if kind == "geman_mcclure":  # as r^2 / (r^2 + c^2): the same floating-point value as the refiner always had
        return 0.5 * squared / (squared + scale * scale)
    a2 = squared / (scale * scale)
    if kind == "huber":
        return torch.where(a2 <= 1, 0.5 * a2, a2.clamp_min(1.0).sqrt() - 0.5)
    if kind == "tukey":
        return (1 - (1 - a2.clamp(max=1)) ** 3) / 6
    if kind == "cauchy":
        return 0.5 * torch.log1p(a2)
    if kind == "charbonnier":
        return torch.sqrt(1 + a2) - 1
    if kind == "none":
        return 0.5 * a2
    raise InvalidValueError(f"unknown robust function {kind!r}")


def sdf_point_jacobian(points_cam: torch.Tensor, normals_cam: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """``(N, 6)`` derivative of the signed distance of fixed camera points to the posed object.

    Args:
        points_cam: ``(N, 3)`` query points [m, camera frame]; normals_cam: ``(N, 3)`` outward unit normals
            (the SDF gradient) there; translation: ``(3,)`` object origin in the camera frame [m].
    Returns ``[-n^T, (n x (c - t))^T]`` per point.
    """
    return torch.cat((-normals_cam, torch.linalg.cross(normals_cam, points_cam - translation, dim=-1)), -1)


def hand_point_residuals(distance: torch.Tensor, offsets: torch.Tensor | float,
                         below: torch.Tensor | None = None, above: torch.Tensor | None = None) -> torch.Tensor:
    """Residuals ``(..., K)`` [m] of hand points from their signed distances ``distance (..., K)`` to the object
    (negative inside): ``r = d - offset`` (``offsets (K,)`` or a number [m]).

    ``below (K,)`` bool: one-sided, only ``min(r, 0)`` counts there (non-penetration: only points inside pull);
    ``above (K,)`` bool: only ``max(r, 0)`` (at most ``offset`` away, e.g. a target contact).
    """
    r = distance - offsets
    if below is not None:
        r = torch.where(below, r.clamp(max=0.0), r)
    if above is not None:
        r = torch.where(above, r.clamp(min=0.0), r)
    return r


def penetration_residuals(distance: torch.Tensor) -> torch.Tensor:
    """``(..., K)`` [m] non-penetration residuals of points at signed distances ``distance (..., K)``: ``min(d, 0)``
    (how deep each point lies inside; 0 outside), the one-sided :func:`hand_point_residuals`; the penetration
    loss of Eq. 3 is their mean magnitude."""
    return hand_point_residuals(distance, 0.0, below=torch.ones((), dtype=torch.bool, device=distance.device))


def hand_point_jacobian(points_cam: torch.Tensor, normals_cam: torch.Tensor, translation: torch.Tensor,
                        hand_block: torch.Tensor | None = None) -> torch.Tensor:
    """``(K, 6 [+ D])`` derivative of the signed distance of hand points to the posed object over the pose tangent
    ``(rho [m], phi [rad])`` (closed form, :func:`sdf_point_jacobian`) and, given ``hand_block (K, D)``
    (:func:`hand_parameter_jacobian`: ``n^T dc/dtheta``), over the hand parameters ``theta`` after it.

    Args: points_cam ``(K, 3)`` [m, camera frame]; normals_cam ``(K, 3)`` outward unit normals there;
    translation ``(3,)`` object origin [m, camera frame].
    """
    J = sdf_point_jacobian(points_cam, normals_cam, translation)
    return J if hand_block is None else torch.cat((J, hand_block.to(J)), -1)


def hand_parameter_jacobian(points_fn: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
                            normals_cam: torch.Tensor) -> torch.Tensor:
    """``(K, D)`` hand block ``n_k^T dc_k/dtheta`` of signed-distance rows, by reverse-mode autodiff of the hand's
    forward kinematics ``points_fn(theta (D,)) -> (K, 3)`` [m, camera frame] at ``theta``, with the outward normals
    ``normals_cam (K, 3)`` held fixed (to first order the SDF's gradient at ``c_k``)."""
    n = normals_cam.detach()
    theta = theta.detach()

    def along_normals(th: torch.Tensor) -> torch.Tensor:
        return (points_fn(th) * n.to(th)).sum(-1)

    with torch.enable_grad():
        return torch.autograd.functional.jacobian(along_normals, theta, vectorize=True).detach()


def reprojection_residuals(camera, points_cam: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """``(B, N, 2)`` [px] projections of ``points_cam (B, N, 3)`` [m, camera frame] by ``camera`` (a
    :class:`~handypriors_core.geometry.camera.PinholeCamera`) minus the observed ``pixels (N, 2)`` [px] (2D keypoints,
    a detected object centre). Differentiable."""
    return camera.project(points_cam) - pixels


def reprojection_jacobian(camera, points_cam: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """``(N, 2, 6)`` [px per m or rad] closed-form derivative of :func:`reprojection_residuals` of points rigidly
    attached to the object, ``points_cam (N, 3)`` [m, camera frame, in front of the camera], over the pose tangent
    ``(rho, phi)``: ``d(u, v)/dp @ [I, -[p - t]x]`` with ``translation (3,)`` the object origin [m]."""
    focal = torch.stack((torch.as_tensor(camera.fx), torch.as_tensor(camera.fy))).to(points_cam)
    x, y, z = points_cam.unbind(-1)
    zero = torch.zeros_like(z)
    d_uv = torch.stack((torch.stack((1 / z, zero, -x / z ** 2), -1),
                        torch.stack((zero, 1 / z, -y / z ** 2), -1)), -2) * focal[:, None]  # (N, 2, 3)
    lever = points_cam - translation
    return torch.cat((d_uv, torch.linalg.cross(lever[:, None, :].expand(-1, 2, -1), d_uv, dim=-1)), -1)
