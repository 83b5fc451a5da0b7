"""Error-state EKF on SE(3): manifold operations, Jacobians vs finite differences, NEES consistency,
nonlinear convergence, gating, information form vs standard form, NaN handling."""

import math

import pytest
import torch
from scipy.stats import chi2

from handypriors_core.config import settings_from_dict
from handypriors_core.errors import ConfigError, InvalidValueError, ShapeError
from handypriors_core.estimation import (
    EKFSettings,
    ErrorStateEKF,
    PoseState,
    covariance_to_body_frame,
    covariance_to_se3_left,
    linearize,
    linearize_rowwise,
    local_difference,
    retract,
    ros_covariance_list,
    ros_pose_covariance,
)
from handypriors_core.estimation.linearization import motion_jacobian
from handypriors_core.estimation.pose_state import retract_first_order, so3_left_jacobian
from handypriors_core.geometry import (
    axis_angle_to_matrix,
    invert_transform,
    make_transform,
    matrix_to_axis_angle,
    se3_log,
    transform_points,
)

# torch's forward-mode AD loads jvp decompositions through torch.jit.script once (internal, harmless)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

F64 = torch.float64
DT = 1.0 / 30.0


def _pose(aa, t) -> torch.Tensor:
    return make_transform(axis_angle_to_matrix(torch.tensor(aa, dtype=F64)), torch.tensor(t, dtype=F64))


def _random_state(gen: torch.Generator, m: int = 2) -> PoseState:
    aa = torch.randn(3, generator=gen, dtype=F64)
    aa = aa / aa.norm() * (0.3 + 2.5 * torch.rand(1, generator=gen, dtype=F64))
    t = torch.randn(3, generator=gen, dtype=F64) * 0.1 + torch.tensor([0.0, 0.0, 0.45], dtype=F64)
    return PoseState.from_pose(make_transform(axis_angle_to_matrix(aa), t), torch.randn(m, generator=gen, dtype=F64))


def _numeric_jacobian(fn, state: PoseState, step: float = 1e-6) -> torch.Tensor:
    """Central differences of fn(state [+] d) with the exact retraction (independent of ``linearize``)."""
    cols = []
    for i in range(state.dim):
        d = torch.zeros(state.dim, dtype=F64)
        d[i] = step
        cols.append((fn(retract(state, d)) - fn(retract(state, -d))) / (2 * step))
    return torch.stack(cols, -1)


# ---------------------------------------------------------------------------------------------- manifold
def test_retract_and_local_difference_are_inverse():
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        a, b = _random_state(gen), _random_state(gen)
        back = retract(b, local_difference(a, b))
        torch.testing.assert_close(back.pose, a.pose, atol=1e-12, rtol=0)
        torch.testing.assert_close(back.extra, a.extra)
        delta = torch.randn(8, generator=gen, dtype=F64) * 0.5
        torch.testing.assert_close(local_difference(retract(a, delta), a), delta, atol=1e-12, rtol=0)


def test_retraction_is_left_parent_frame_rotation_about_body_origin():
    state = PoseState.from_pose(_pose([0.2, 0.1, -0.3], [0.1, -0.05, 0.5]))
    delta = torch.tensor([0.01, 0.02, 0.03, 0.0, 0.0, 0.5], dtype=F64)
    moved = retract(state, delta)
    expected_R = axis_angle_to_matrix(delta[3:]) @ state.rotation
    torch.testing.assert_close(moved.rotation, expected_R)
    torch.testing.assert_close(moved.translation, state.translation + delta[:3])


def test_pose_state_validation():
    with pytest.raises(ShapeError, match="pose"):
        PoseState.from_pose(torch.eye(3, dtype=F64))
    with pytest.raises(InvalidValueError, match="pose"):
        PoseState.from_pose(torch.full((4, 4), math.nan, dtype=F64))
    with pytest.raises(InvalidValueError, match="extra"):
        PoseState(torch.eye(4, dtype=F64), torch.zeros(2, dtype=torch.float32))


def test_first_order_retraction_gives_the_exact_jacobian():
    gen = torch.Generator().manual_seed(1)
    state = _random_state(gen)
    pts = torch.randn(4, 3, generator=gen, dtype=F64) * 0.05

    def h(s: PoseState) -> torch.Tensor:
        p = transform_points(s.pose, pts)
        return torch.cat(((p[:, :2] / p[:, 2:]).reshape(-1), s.extra ** 2))

    exact = torch.func.jacrev(lambda d: h(retract(state, d)))(torch.zeros(8, dtype=F64))
    cheap = torch.func.jacrev(lambda d: h(retract_first_order(state, d)))(torch.zeros(8, dtype=F64))
    torch.testing.assert_close(cheap, exact, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("mode", ["forward", "reverse", "reverse_loop", "central_difference"])
def test_linearize_matches_finite_differences(mode):
    gen = torch.Generator().manual_seed(2)
    state = _random_state(gen)
    pts = torch.randn(5, 3, generator=gen, dtype=F64) * 0.05
    K = torch.tensor([[615.0, 0, 319.5], [0, 615.0, 239.5], [0, 0, 1]], dtype=F64)

    def h(s: PoseState) -> torch.Tensor:  # pixels of 5 points + a nonlinear function of the extras
        p = transform_points(s.pose, pts) @ K.T
        return torch.cat(((p[:, :2] / p[:, 2:]).reshape(-1), torch.sin(s.extra)))

    with torch.no_grad():  # the tracker may call the filter under no_grad
        value, J = linearize(h, state, mode)
    torch.testing.assert_close(value, h(state))
    torch.testing.assert_close(J, _numeric_jacobian(h, state), atol=2e-5, rtol=1e-6)


def test_rowwise_linearize_matches_finite_differences():
    """Point-wise model (each output one point's pixel coordinate): one reverse pass equals central differences."""
    gen = torch.Generator().manual_seed(5)
    state = _random_state(gen, m=0)
    pts = torch.randn(7, 3, generator=gen, dtype=F64) * 0.05
    K = torch.tensor([[615.0, 0, 319.5], [0, 615.0, 239.5], [0, 0, 1]], dtype=F64)

    def u_of(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (k, 3, 3), (k, 3) -> (k,): u of point i
        p = (torch.einsum("kij,kj->ki", R, pts) + t) @ K.T
        return p[:, 0] / p[:, 2]

    def h(s: PoseState) -> torch.Tensor:
        return u_of(s.rotation.expand(7, 3, 3), s.translation.expand(7, 3))

    with torch.no_grad():  # the tracker calls the filter under no_grad
        value, J = linearize_rowwise(u_of, state, 7)
    assert J.shape == (7, 6)
    torch.testing.assert_close(value, h(state))
    torch.testing.assert_close(J, _numeric_jacobian(h, state), atol=2e-5, rtol=1e-6)
    with pytest.raises(ShapeError):  # a model that does not give one value per row
        linearize_rowwise(lambda R, t: u_of(R, t)[:5], state, 7)


def test_motion_model_jacobian_equals_the_filters_forward_mode_jacobian():
    """The tracker's closed-form F of ``x -> M x`` equals the EKF's own (forward mode over f) and central
    differences of the exact retraction (float64)."""
    gen = torch.Generator().manual_seed(9)
    state = _random_state(gen, m=0)
    motion = _pose([0.2, -0.4, 0.3], [0.03, -0.01, 0.02])
    ekf = ErrorStateEKF(state, torch.eye(6, dtype=F64) * 1e-3)
    step = ekf.predict(lambda s, u: PoseState(motion @ s.pose, s.extra), None, torch.eye(6, dtype=F64) * 1e-6)
    F = motion_jacobian(motion[:3, :3])
    torch.testing.assert_close(F, step.jacobian, atol=1e-12, rtol=1e-10)
    assert not torch.allclose(F, torch.eye(6, dtype=F64))  # the rotation of the motion is in F
    moved = PoseState(motion @ state.pose, state.extra)
    eps = 1e-6
    cols = [(local_difference(PoseState(motion @ retract(state, eps * e).pose, state.extra), moved)
             - local_difference(PoseState(motion @ retract(state, -eps * e).pose, state.extra), moved)) / (2 * eps)
            for e in torch.eye(6, dtype=F64)]
    torch.testing.assert_close(F, torch.stack(cols, -1), atol=1e-8, rtol=0)
    # the EKF's closed-form rigid-motion predict (extras carried unchanged) is the autodiff predict
    state2 = _random_state(gen, m=2)
    P0, Q = torch.eye(8, dtype=F64) * 1e-3, torch.eye(8, dtype=F64) * 1e-6
    auto, closed = ErrorStateEKF(state2, P0), ErrorStateEKF(state2, P0)
    a = auto.predict(lambda s, u: PoseState(motion @ s.pose, s.extra), None, Q)
    c = closed.predict_motion(motion, Q)
    assert a.accepted and c.accepted
    torch.testing.assert_close(c.jacobian, a.jacobian, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(closed.covariance, auto.covariance, atol=1e-14, rtol=1e-10)
    torch.testing.assert_close(closed.state.pose, auto.state.pose, atol=1e-14, rtol=0)
    torch.testing.assert_close(closed.state.extra, state2.extra.to(F64))


def test_so3_left_jacobian_matches_finite_differences():
    for phi in ([0.0, 0.0, 0.0], [1e-4, -2e-4, 3e-4], [0.4, -1.2, 0.7]):
        phi = torch.tensor(phi, dtype=F64)
        R = axis_angle_to_matrix(phi)

        def g(e, phi=phi, R=R):
            return matrix_to_axis_angle(axis_angle_to_matrix(phi + e) @ R.T)

        eps = 1e-6
        num = torch.stack([(g(eps * c) - g(-eps * c)) / (2 * eps) for c in torch.eye(3, dtype=F64)], -1)
        torch.testing.assert_close(so3_left_jacobian(phi), num, atol=1e-8, rtol=0)


def test_covariance_conversions_match_their_tangent_maps():
    state = PoseState.from_pose(_pose([0.3, -0.4, 1.1], [0.05, -0.02, 0.45]))
    T = state.pose

    # se(3) left tangent: xi = se3_log(T_new @ T^-1) ~= M_se3 delta
    def to_se3(d):
        return se3_log(retract(state, d).pose @ invert_transform(T))

    def to_body(d):  # body-frame: (R^T (t_new - t), log(R^T R_new))
        new = retract(state, d)
        return torch.cat((T[:3, :3].T @ (new.translation - T[:3, 3]), matrix_to_axis_angle(T[:3, :3].T @ new.rotation)))

    gen = torch.Generator().manual_seed(3)
    A = torch.randn(6, 6, generator=gen, dtype=F64)
    C = A @ A.T
    for fn, convert in ((to_se3, covariance_to_se3_left), (to_body, covariance_to_body_frame)):
        M = torch.func.jacfwd(fn)(torch.zeros(6, dtype=F64))
        torch.testing.assert_close(convert(C, T), M @ C @ M.T, atol=1e-10, rtol=1e-10)


def test_ros_covariance_is_the_pose_block_row_major():
    P = torch.arange(81, dtype=F64).reshape(9, 9)
    P = P + P.T
    torch.testing.assert_close(ros_pose_covariance(P), P[:6, :6])
    values = ros_covariance_list(P)
    assert len(values) == 36 and values[1] == float(P[0, 1]) and values[6] == float(P[1, 0])
    with pytest.raises(ShapeError):
        ros_pose_covariance(torch.eye(5, dtype=F64))


# ---------------------------------------------------------------------------------------------- settings
def test_settings_from_dict_and_validation():
    s = settings_from_dict(EKFSettings, {"jacobian_mode": "central_difference", "difference_step": 1e-5})
    assert s.jacobian_mode == "central_difference" and s.difference_step == 1e-5
    with pytest.raises(ConfigError):
        settings_from_dict(EKFSettings, {"jacobian_mode": "magic"})
    with pytest.raises(ConfigError):
        settings_from_dict(EKFSettings, {"jacobain_mode": "forward"})


def test_constructor_rejects_bad_covariance():
    state = PoseState.from_pose(torch.eye(4, dtype=F64))
    with pytest.raises(ShapeError, match="covariance"):
        ErrorStateEKF(state, torch.eye(5, dtype=F64))
    with pytest.raises(InvalidValueError, match="positive definite"):
        ErrorStateEKF(state, -torch.eye(6, dtype=F64))
    bad = torch.eye(6, dtype=F64)
    bad[0, 1] = 0.5
    with pytest.raises(InvalidValueError, match="symmetric"):
        ErrorStateEKF(state, bad)


# ---------------------------------------------------------------------------------------------- predict
def _constant_velocity(state: PoseState, u) -> PoseState:
    """extra = twist (v [m/s], w [rad/s]) in the parent frame; R <- exp(w dt) R, t <- t + v dt."""
    v, w = state.extra[:3], state.extra[3:6]
    R = axis_angle_to_matrix(w * DT) @ state.rotation
    return PoseState(make_transform(R, state.translation + v * DT), state.extra)


def test_predict_jacobian_matches_finite_differences():
    gen = torch.Generator().manual_seed(4)
    state = PoseState.from_pose(_random_state(gen).pose, torch.tensor([0.1, -0.2, 0.05, 2.0, -1.0, 3.0], dtype=F64))
    x_pred = _constant_velocity(state, None)
    numeric = _numeric_jacobian(lambda s: local_difference(_constant_velocity(s, None), x_pred), state)
    for mode in ("forward", "reverse", "central_difference"):
        ekf = ErrorStateEKF(state, torch.eye(12, dtype=F64), EKFSettings(jacobian_mode=mode))
        result = ekf.predict(_constant_velocity, None, torch.zeros(12, 12, dtype=F64))
        assert result.accepted
        torch.testing.assert_close(result.jacobian, numeric, atol=1e-7, rtol=1e-7)
        torch.testing.assert_close(ekf.covariance, numeric @ numeric.T, atol=1e-7, rtol=1e-7)
        torch.testing.assert_close(ekf.pose, x_pred.pose)


def test_rotation_is_kept_orthonormal():
    state = PoseState.from_pose(_pose([0.3, -0.2, 0.1], [0.0, 0.0, 0.5]))
    ekf = ErrorStateEKF(state, torch.eye(6, dtype=F64) * 1e-4)

    def sloppy(s, u):  # a motion model whose rotation is off SO(3) by 1e-6 (e.g. computed in float32)
        pose = s.pose.clone()
        pose[:3, :3] = pose[:3, :3] * (1 + 1e-6)
        return PoseState(pose, s.extra)

    for _ in range(5):
        assert ekf.predict(sloppy, None, torch.eye(6, dtype=F64) * 1e-8).accepted
    R = ekf.pose[:3, :3]
    torch.testing.assert_close(R.T @ R, torch.eye(3, dtype=F64), atol=1e-14, rtol=0)


# ---------------------------------------------------------------------------------------------- (a) NEES
def _run_linear_case(seed: int, runs: int, steps: int, r_scale: float = 1.0) -> torch.Tensor:
    """Monte Carlo NEES of a pose + velocity filter with (nearly) linear models.

    Truth: t' = t + v dt, v' = v + w_v, R' = exp(w_r) R. Observations: t + n_t and exp(n_r) R (residual
    log(Z R^T)). The filter uses the true noise levels (times ``r_scale`` for R). Returns NEES (runs, steps).
    """
    gen = torch.Generator().manual_seed(seed)
    n = 9
    q_v, q_r, r_t, r_r = 1e-4, 1e-4, 1e-6, 4e-4  # variances: [m^2/s^2], [rad^2], [m^2], [rad^2]
    Q = torch.diag(torch.tensor([0.0] * 3 + [q_r] * 3 + [q_v] * 3, dtype=F64))
    Q[:3, :3] = torch.eye(3, dtype=F64) * q_v * DT * DT / 4  # small translational noise too
    P0 = torch.diag(torch.tensor([1e-4] * 3 + [1e-3] * 3 + [1e-2] * 3, dtype=F64))
    F = torch.eye(n, dtype=F64)
    F[:3, 6:] = torch.eye(3, dtype=F64) * DT
    H = torch.zeros(6, n, dtype=F64)
    H[:6, :6] = torch.eye(6, dtype=F64)
    R_true = torch.diag(torch.tensor([r_t] * 3 + [r_r] * 3, dtype=F64))
    LQ = torch.linalg.cholesky(Q + 1e-300 * torch.eye(n, dtype=F64))
    LP = torch.linalg.cholesky(P0)

    def f(s, u):
        return PoseState(make_transform(s.rotation, s.translation + s.extra * DT), s.extra)

    def h(s):
        return torch.cat((s.translation, s.rotation.reshape(-1)))

    def residual(z, hx):
        return torch.cat((z[:3] - hx[:3], matrix_to_axis_angle(z[3:].reshape(3, 3) @ hx[3:].reshape(3, 3).T)))

    nees = torch.zeros(runs, steps, dtype=F64)
    for run in range(runs):
        velocity = torch.tensor([0.05, 0.0, -0.02], dtype=F64)
        truth = PoseState.from_pose(_pose([0.3, 0.2, -0.1], [0.0, 0.0, 0.45]), velocity)
        est = retract(truth, LP @ torch.randn(n, generator=gen, dtype=F64))
        ekf = ErrorStateEKF(est, P0)
        for k in range(steps):
            truth = retract(f(truth, None), LQ @ torch.randn(n, generator=gen, dtype=F64))
            noise = torch.randn(6, generator=gen, dtype=F64) * R_true.diagonal().sqrt()
            Z = axis_angle_to_matrix(noise[3:]) @ truth.rotation
            z = torch.cat((truth.translation + noise[:3], Z.reshape(-1)))
            assert ekf.predict(f, None, Q, jacobian=F).accepted
            result = ekf.update(z, h, R_true * r_scale, residual=residual, jacobian=H, gate_probability=None)
            assert result.accepted
            e = local_difference(truth, ekf.state)
            nees[run, k] = e @ torch.linalg.solve(ekf.covariance, e)
    return nees


def test_nees_is_consistent_on_a_linear_case():
    runs, steps, n = 25, 10, 9
    nees = _run_linear_case(seed=5, runs=runs, steps=steps)
    lo, hi = chi2.ppf(0.025, runs * n) / runs, chi2.ppf(0.975, runs * n) / runs
    anees = nees.mean(0)  # average over runs, per step
    inside = ((anees > lo) & (anees < hi)).float().mean().item()
    assert inside >= 0.8, f"ANEES per step {anees.tolist()} vs 95% bounds [{lo:.2f}, {hi:.2f}]"
    assert lo < nees.mean().item() < hi


def test_nees_detects_an_overconfident_filter():
    runs, steps, n = 10, 6, 9
    nees = _run_linear_case(seed=5, runs=runs, steps=steps, r_scale=0.05)
    hi = chi2.ppf(0.975, runs * n) / runs
    assert nees.mean().item() > hi


# ---------------------------------------------------------------------------------------------- (b) nonlinear
def test_nonlinear_pose_tracking_from_pixels_converges():
    gen = torch.Generator().manual_seed(6)
    K = torch.tensor([[615.0, 0, 319.5], [0, 615.0, 239.5], [0, 0, 1]], dtype=F64)
    corners = [[x, y, z] for x in (-0.02, 0.02) for y in (-0.03, 0.03) for z in (-0.045, 0.045)]
    corners = torch.tensor(corners, dtype=F64)
    twist = torch.tensor([0.03, -0.02, 0.01, 0.5, -0.3, 0.8], dtype=F64)  # m/s, rad/s
    truth = PoseState.from_pose(_pose([2.0, -0.5, 0.4], [0.02, -0.01, 0.45]), twist)
    start = retract(truth, torch.cat((torch.tensor([0.02, -0.02, 0.02, 0.2, 0.1, -0.15], dtype=F64), -twist)))
    P0 = torch.diag(torch.tensor([4e-4] * 3 + [0.05] * 3 + [0.01] * 3 + [1.0] * 3, dtype=F64))
    Q = torch.diag(torch.tensor([1e-8] * 6 + [1e-5] * 6, dtype=F64))
    sigma_px = 1.0

    def h(s):
        p = transform_points(s.pose, corners) @ K.T
        return (p[:, :2] / p[:, 2:]).reshape(-1)

    ekf = ErrorStateEKF(start, P0)
    initial_angle = torch.linalg.norm(local_difference(truth, start)[3:6]).item()
    for _ in range(40):
        truth = _constant_velocity(truth, None)
        z = h(truth) + sigma_px * torch.randn(16, generator=gen, dtype=F64)
        assert ekf.predict(_constant_velocity, None, Q).accepted
        result = ekf.update(z, h, torch.full((16,), sigma_px**2, dtype=F64))
        assert result.status == "accepted"
    err = local_difference(truth, ekf.state)
    assert initial_angle > 0.2
    assert torch.linalg.norm(err[:3]) < 3e-3, err
    assert torch.linalg.norm(err[3:6]) < math.radians(2.0), err
    assert torch.linalg.norm(err[6:9]) < 0.02 and torch.linalg.norm(err[9:]) < 0.3, err


# ---------------------------------------------------------------------------------------------- (c) gating
def _translation_filter() -> tuple[ErrorStateEKF, callable]:
    state = PoseState.from_pose(_pose([0.1, 0.2, 0.3], [0.0, 0.0, 0.5]))
    ekf = ErrorStateEKF(state, torch.diag(torch.tensor([1e-4] * 3 + [1e-2] * 3, dtype=F64)))
    return ekf, (lambda s: s.translation)


def test_gating_rejects_an_outlier_and_keeps_the_state():
    ekf, h = _translation_filter()
    R = torch.full((3,), 1e-6, dtype=F64)
    inlier = ekf.update(torch.tensor([0.003, -0.002, 0.501], dtype=F64), h, R)
    assert inlier.accepted and inlier.status == "accepted"
    assert inlier.nis < inlier.threshold == pytest.approx(chi2.ppf(0.999, 3))
    pose, cov = ekf.pose.clone(), ekf.covariance.clone()
    outlier = ekf.update(torch.tensor([0.2, -0.002, 0.5], dtype=F64), h, R)
    assert not outlier.accepted and outlier.status == "gated" and outlier.nis > outlier.threshold
    assert torch.equal(ekf.pose, pose) and torch.equal(ekf.covariance, cov)
    assert torch.count_nonzero(outlier.correction) == 0
    forced = ekf.update(torch.tensor([0.2, -0.002, 0.5], dtype=F64), h, R, gate_probability=None)
    assert forced.accepted and not torch.equal(ekf.pose, pose)


# ---------------------------------------------------------------------------------------------- (d) info form
def _linear_problem(seed: int, k: int = 40):
    gen = torch.Generator().manual_seed(seed)
    state = _random_state(gen, m=3)
    n = state.dim
    A = torch.randn(n, n, generator=gen, dtype=F64)
    P = A @ A.T * 1e-3 + 1e-4 * torch.eye(n, dtype=F64)
    H = torch.randn(k, n, generator=gen, dtype=F64)
    r_var = 0.01 + torch.rand(k, generator=gen, dtype=F64) * 0.02
    y = H @ (torch.linalg.cholesky(P) @ torch.randn(n, generator=gen, dtype=F64))
    y = y + r_var.sqrt() * torch.randn(k, generator=gen, dtype=F64)
    return state, P, H, r_var, y


def test_information_form_equals_standard_update():
    state, P, H, r_var, y = _linear_problem(7)
    z = y  # h(x) = 0 at the linearisation point, observation = innovation
    standard = ErrorStateEKF(state, P)
    s = standard.update(z, lambda st: torch.zeros_like(z), r_var, jacobian=H)
    info = ErrorStateEKF(state, P)
    Rinv = torch.diag(1.0 / r_var)
    lam, eta, rsq = H.T @ Rinv @ H, H.T @ Rinv @ y, y @ Rinv @ y
    i = info.update_information(lam, eta, residual_sq=rsq, num_observations=len(y), gate="full")
    assert s.accepted and i.accepted
    torch.testing.assert_close(i.correction, s.correction, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(info.covariance, standard.covariance, atol=1e-14, rtol=1e-9)
    torch.testing.assert_close(info.pose, standard.pose, atol=1e-14, rtol=0)
    assert i.nis == pytest.approx(s.nis, rel=1e-9) and i.dof == s.dof == len(y)


def test_information_form_projected_gate():
    state, P, H, r_var, y = _linear_problem(8)
    Rinv = torch.diag(1.0 / r_var)
    lam = H.T @ Rinv @ H
    n = state.dim
    ok = ErrorStateEKF(state, P).update_information(lam, H.T @ Rinv @ y)
    assert ok.accepted and ok.dof == n and ok.nis < ok.threshold == pytest.approx(chi2.ppf(0.999, n))
    # an outlier that moves the state far beyond its covariance is rejected, state untouched
    ekf = ErrorStateEKF(state, P)
    cov = ekf.covariance.clone()
    bad = y + H @ (torch.ones(n, dtype=F64) * 0.5)
    rejected = ekf.update_information(lam, H.T @ Rinv @ bad)
    assert rejected.status == "gated" and torch.equal(ekf.pose, state.pose) and torch.equal(ekf.covariance, cov)
    # rank-deficient information (only translation observed): dof = 3, other states keep their covariance
    lam3 = torch.zeros(n, n, dtype=F64)
    lam3[:3, :3] = torch.eye(3, dtype=F64) * 1e4
    ekf = ErrorStateEKF(state, torch.eye(n, dtype=F64) * 1e-4)
    partial = ekf.update_information(lam3, torch.tensor([1e2, 0, 0] + [0] * (n - 3), dtype=F64))
    assert partial.accepted and partial.dof == 3
    torch.testing.assert_close(ekf.covariance[3:, 3:], torch.eye(n - 3, dtype=F64) * 1e-4)
    assert ekf.covariance[0, 0] < 1e-4 / 2


# ---------------------------------------------------------------------------------------------- (e) NaN
def test_nan_observations_and_models_never_reach_the_state():
    ekf, h = _translation_filter()
    pose, cov = ekf.pose.clone(), ekf.covariance.clone()
    R = torch.full((3,), 1e-6, dtype=F64)
    r = ekf.update(torch.tensor([math.nan, 0.0, 0.5], dtype=F64), h, R)
    assert r.status == "non_finite" and not r.accepted
    r = ekf.update(torch.tensor([0.0, 0.0, 0.5], dtype=F64), lambda s: s.translation * math.nan, R)
    assert r.status == "non_finite"
    r = ekf.update_information(torch.full((6, 6), math.nan, dtype=F64), torch.zeros(6, dtype=F64))
    assert r.status == "non_finite"

    def f_nan(s, u):
        return PoseState(s.pose * math.nan, s.extra)

    r = ekf.predict(f_nan, None, torch.eye(6, dtype=F64) * 1e-6)
    assert r.status == "non_finite"
    assert torch.equal(ekf.pose, pose) and torch.equal(ekf.covariance, cov)
    assert ekf.state.is_finite()
    with pytest.raises(InvalidValueError, match="R"):
        ekf.update(torch.zeros(3, dtype=F64), h, torch.tensor([1.0, -1.0, 1.0], dtype=F64))
