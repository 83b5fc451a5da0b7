"""Kabsch / Umeyama alignment: exact recovery, scipy's align_vectors, weights, reflections, gradients."""

import itertools

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry import kabsch
from handypriors_core.geometry.rotations import axis_angle_to_matrix

F64 = torch.float64


def _random_motion(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    R = axis_angle_to_matrix(torch.randn(batch, 3, generator=gen, dtype=F64) * 1.5)
    return R, torch.randn(batch, 3, generator=gen, dtype=F64)


def _scipy_rotation(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Independent weighted Kabsch: scipy align_vectors on weighted-centred points."""
    w = weights / weights.sum()
    src_c = src - (w[:, None] * src).sum(0)
    dst_c = dst - (w[:, None] * dst).sum(0)
    return Rotation.align_vectors(dst_c, src_c, weights=weights)[0].as_matrix()


def test_recovers_known_rigid_motion_exactly():
    R_true, t_true = _random_motion(4, seed=0)
    src = torch.randn(4, 20, 3, dtype=F64)
    dst = src @ R_true.transpose(-1, -2) + t_true[:, None]
    R, t = kabsch.weighted_kabsch(src, dst)
    torch.testing.assert_close(R, R_true, atol=1e-9, rtol=0)
    torch.testing.assert_close(t, t_true, atol=1e-9, rtol=0)


def test_matches_scipy_with_noise_and_weights():
    gen = torch.Generator().manual_seed(1)
    R_true, t_true = _random_motion(3, seed=1)
    src = torch.randn(3, 15, 3, generator=gen, dtype=F64)
    dst = src @ R_true.transpose(-1, -2) + t_true[:, None] + 0.1 * torch.randn(3, 15, 3, generator=gen, dtype=F64)
    weights = torch.rand(3, 15, generator=gen, dtype=F64) + 0.1
    R, t = kabsch.weighted_kabsch(src, dst, weights)
    for b in range(3):
        expected = _scipy_rotation(src[b].numpy(), dst[b].numpy(), weights[b].numpy())
        np.testing.assert_allclose(R[b].numpy(), expected, atol=1e-10)
    # t makes the weighted residual zero-mean
    residual = dst - (src @ R.transpose(-1, -2) + t[:, None])
    torch.testing.assert_close((weights[..., None] * residual).sum(1), torch.zeros(3, 3, dtype=F64))


def test_reflection_is_fixed():
    gen = torch.Generator().manual_seed(2)
    src = torch.randn(2, 12, 3, generator=gen, dtype=F64)
    dst = src * torch.tensor([1.0, 1.0, -1.0], dtype=F64)  # a mirror image: the SVD optimum has det -1
    R, _ = kabsch.weighted_kabsch(src, dst)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2, dtype=F64))
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=F64).expand(2, 3, 3))
    for b in range(2):
        expected = _scipy_rotation(src[b].numpy(), dst[b].numpy(), np.ones(12))
        np.testing.assert_allclose(R[b].numpy(), expected, atol=1e-10)


def test_zero_weight_outliers_are_ignored():
    R_true, t_true = _random_motion(2, seed=3)
    src = torch.randn(2, 10, 3, dtype=F64)
    dst = src @ R_true.transpose(-1, -2) + t_true[:, None]
    dst[:, :3] += 5.0  # outliers
    weights = torch.ones(2, 10, dtype=F64)
    weights[:, :3] = 0.0
    R, t = kabsch.weighted_kabsch(src, dst, weights)
    torch.testing.assert_close(R, R_true, atol=1e-9, rtol=0)
    torch.testing.assert_close(t, t_true, atol=1e-9, rtol=0)
    R_unweighted, _ = kabsch.weighted_kabsch(src, dst)
    assert (R_unweighted - R_true).abs().max() > 1e-3


def test_similarity_recovers_known_scale():
    R_true, t_true = _random_motion(3, seed=4)
    scale_true = torch.tensor([0.5, 1.0, 2.5], dtype=F64)
    src = torch.randn(3, 9, 3, dtype=F64)
    dst = scale_true[:, None, None] * src @ R_true.transpose(-1, -2) + t_true[:, None]
    scale, R, t = kabsch.similarity_procrustes(src, dst)
    torch.testing.assert_close(scale, scale_true, atol=1e-9, rtol=0)
    torch.testing.assert_close(R, R_true, atol=1e-9, rtol=0)
    torch.testing.assert_close(t, t_true, atol=1e-9, rtol=0)


def test_similarity_scale_is_least_squares_optimum():
    gen = torch.Generator().manual_seed(5)
    src = torch.randn(1, 8, 3, generator=gen, dtype=F64)
    dst = torch.randn(1, 8, 3, generator=gen, dtype=F64)
    scale, R, t = kabsch.similarity_procrustes(src, dst)

    def cost(s):
        return ((s * src @ R.transpose(-1, -2) + t[:, None] - dst) ** 2).sum()

    # With R fixed, the optimal t for each scale is recomputed; cost must be minimal at the returned scale.
    def cost_best_t(s):
        shift = (dst - s * src @ R.transpose(-1, -2)).mean(1, keepdim=True)
        return ((s * src @ R.transpose(-1, -2) + shift - dst) ** 2).sum()

    assert cost(scale) <= cost_best_t(scale * 1.01) and cost(scale) <= cost_best_t(scale * 0.99)
    torch.testing.assert_close(cost(scale), cost_best_t(scale))


def test_gradcheck_generic_and_reflection():
    gen = torch.Generator().manual_seed(6)
    src = torch.randn(2, 6, 3, generator=gen, dtype=F64)
    dst = torch.randn(2, 6, 3, generator=gen, dtype=F64)
    dst[1] = src[1] * torch.tensor([1.0, 1.0, -1.0], dtype=F64) + 0.05 * dst[1]  # reflection branch
    weights = torch.rand(2, 6, generator=gen, dtype=F64) + 0.5
    inputs = (src.requires_grad_(), dst.requires_grad_(), weights.requires_grad_())
    assert torch.autograd.gradcheck(kabsch.weighted_kabsch, inputs)
    assert torch.autograd.gradcheck(kabsch.similarity_procrustes, inputs)


def test_gradient_finite_for_symmetric_point_set():
    # Cube corners: all singular values coincide, where differentiating U and V separately gives NaN/inf.
    cube = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=F64)[None]
    R_true, t_true = _random_motion(1, seed=7)
    dst = (cube @ R_true.transpose(-1, -2) + t_true[:, None]).requires_grad_()
    src = cube.clone().requires_grad_()
    R, t = kabsch.weighted_kabsch(src, dst)
    (R.sum() + t.sum()).backward()
    assert torch.isfinite(dst.grad).all() and torch.isfinite(src.grad).all()
    assert torch.autograd.gradcheck(
        lambda d: kabsch.weighted_kabsch(src.detach(), d)[0], (dst.detach().requires_grad_(),)
    )


def test_well_conditioned_flag():
    gen = torch.Generator().manual_seed(8)
    generic = torch.randn(1, 10, 3, generator=gen, dtype=F64)
    direction = torch.tensor([1.0, 2.0, -1.0], dtype=F64)
    collinear = torch.linspace(-1, 1, 10, dtype=F64)[None, :, None] * direction + 1e-6 * generic
    two_points = generic.clone()
    weights = torch.zeros(2, 10, dtype=F64)
    weights[:, :2] = 1.0  # only two points count
    flags = kabsch.kabsch_is_well_conditioned(torch.cat((generic, collinear)), min_singular_value=1e-3)
    assert flags.tolist() == [True, False]
    flags_w = kabsch.kabsch_is_well_conditioned(torch.cat((two_points, generic)), weights, 1e-3)
    assert flags_w.tolist() == [False, False]


def test_collinear_points_give_finite_gradients():
    line = torch.linspace(-1, 1, 5, dtype=F64)[None, :, None] * torch.tensor([1.0, 0.5, 0.2], dtype=F64)
    dst = (line + 0.3).requires_grad_()
    R, t = kabsch.weighted_kabsch(line, dst)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(1, dtype=F64))
    (R.sum() + t.sum()).backward()
    assert torch.isfinite(dst.grad).all()


def test_bad_input_names_argument():
    src = torch.zeros(2, 4, 3)
    with pytest.raises(ShapeError, match="src"):
        kabsch.weighted_kabsch(torch.zeros(4, 3), src)
    with pytest.raises(ShapeError, match="dst"):
        kabsch.weighted_kabsch(src, torch.zeros(2, 5, 3))
    with pytest.raises(ShapeError, match="weights"):
        kabsch.weighted_kabsch(src, src, torch.ones(2, 3))
    with pytest.raises(InvalidValueError, match="weights"):
        kabsch.weighted_kabsch(src, src, -torch.ones(2, 4))
    with pytest.raises(InvalidValueError, match="weights"):
        kabsch.weighted_kabsch(src, src, torch.zeros(2, 4))
    with pytest.raises(InvalidValueError, match="dst"):
        kabsch.weighted_kabsch(src, torch.full((2, 4, 3), float("nan")))
    with pytest.raises(InvalidValueError, match="src"):
        kabsch.similarity_procrustes(src, torch.randn(2, 4, 3))
