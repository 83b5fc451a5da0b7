"""Joint hand-object estimation with a MANO hand (paper Sec. III-D/E, Tables I and II): optimizer and EKF.

Everything is in the **camera frame** (ROS optical frame, metres): the MANO ``global_orient`` / ``transl`` are
``model2camera`` (as HO-3D and DexYCB give them), the object pose is ``object2camera``.

Parameters (:class:`ManoParams`): ``global_orient (B, 3)`` [rad] axis-angle about the wrist joint,
``hand_pose (B, J)`` [rad] axis-angles of the 15 finger joints (or PCA coefficients, see
:class:`~handypriors_core.models.ManoHand`), ``betas (B, S)`` shape, ``transl (B, 3)`` [m]. They are read and
written as JSON by :func:`load_mano_params` / :func:`save_mano_params`; an external network's output (the
initialisation, or the EKF control) comes in that way or from a topic.

2D keypoints (:class:`HandObjectObservation`) are the 21 MANO keypoints in
:data:`~handypriors_core.models.mano_model.MANO_KEYPOINT_NAMES` order [px] with per-keypoint confidences (0 = not
detected), so a fingertip-only detector gives the 5 tips and zero confidence elsewhere
(:func:`load_keypoints` reads a JSON file of named keypoints).

**Optimizer** (:class:`HandObjectOptimizer`, Sec. III-D): Adam over the hand (``hand_pose``, ``global_orient``,
``transl`` and optionally ``betas``) and the object pose (``R = exp([phi]x) R0``, ``t = t0 + rho``) together, on

- ``mask`` (Eq. 2): soft visible silhouettes of the hand and object instances (the hand occludes the object
  and vice versa) against the observed instance masks, at region-of-interest resolution,
- ``keypoints``: robust 2D reprojection of the MANO keypoints against the detections,
- ``penetration`` (Eq. 3, both directions): hand vertices inside the object and object samples inside the
  hand mesh,
- ``sliding``: hand contact vertices of ``t-1`` seen in the object frame must not move,
- ``con`` (Eq. 4, object samples and hand pose), ``smo`` (Eq. 5, object acceleration),
- ``pose_prior``: ``|theta - theta_init|^2``, the initialisation (a network's output) as a prior on the finger
  articulation, which silhouettes alone leave ambiguous; ``shape_prior``: ``|beta|^2`` when shape is optimised.

**EKF** (:class:`HandObjectEKF`, Sec. III-E): state ``x = (object2camera on SE(3), e)`` with the hand in the
Euclidean extras ``e = (global_orient (3), transl (3), hand_pose (J))``; tangent ``(rho, phi, de)``.

- ``f`` (predict): the hand part follows the control ``u`` (an external hand estimate, as ``e``) with process
  noise; the object follows the quasistatic contact motion (Eq. 9, :func:`~handypriors_core.physics.contact_motion`)
  of the MANO contact vertices that touched it at ``t-1``: ``object_t = M(v_{t-1}, v_t) @ object_{t-1}``, or stays
  put (with the larger free-motion noise) without enough rigidly moving contacts.
- ``h``: ``"fingertips"`` (Eq. 8): the 2D projections of the 5 MANO fingertip vertices (or of every confident
  keypoint) [px]; ``"centre"``: the 2D projection of the object centre [px]; optionally ``"contact"``: the
  physics prior that hand vertices in contact at ``t-1`` stay on the object surface (``z = 0`` [m]).
  Table I's O_hand is ``("fingertips",)``, O_object ``("centre",)``, O_hand+object both.
- Jacobians ``F`` and ``H`` by reverse-mode autodiff (:func:`~handypriors_core.estimation.linearization.linearize`, mode
  ``"reverse_loop"``: Kabsch's rotation is a custom autograd function that torch.func cannot trace), except the
  centre's (closed form, :func:`~handypriors_core.estimation.residuals.reprojection_jacobian`) and the contact
  prior's: its pose block is the closed form ``[-n^T, (n x (v - t))^T]`` and its hand block ``n^T dv/dtheta``
  comes from autodiff of MANO (:func:`~handypriors_core.estimation.residuals.hand_point_jacobian`).

**Shared terms.** Every term is the object tracker's code (:mod:`~handypriors_core.estimation.residuals`,
:mod:`~handypriors_core.estimation.modalities`): the contact prior is the object filter's signed-distance
residual, penetration / sliding / con / smo / the silhouettes are the refiner's terms on the MANO vertices, the
keypoint and centre residuals are one reprojection residual for the optimizer and the EKF, robust penalties are
:func:`~handypriors_core.estimation.residuals.robust_loss`; contact queries and object samples come from a
:class:`~handypriors_core.estimation.scene.HandObjectScene`, the pose moves by the refiner's retraction.

Modules: :mod:`.params` (parameters, observations, JSON), :mod:`.settings`, :mod:`.optimizer`, :mod:`.ekf`.
"""

from .ekf import HandObjectEKF, HandObjectEKFStep
from .optimizer import HAND, OBJECT, HandObjectOptimizer, HandObjectResult, pose_delta
from .params import (
    FINGERTIP_KEYPOINTS,
    HandObjectObservation,
    ManoParams,
    load_keypoints,
    load_mano_params,
    mano_params_from_dicts,
    mano_rigid_transform,
    save_mano_params,
)
from .settings import HandObjectEKFSettings, HandObjectSettings

__all__ = [
    "FINGERTIP_KEYPOINTS",
    "HAND",
    "OBJECT",
    "HandObjectEKF",
    "HandObjectEKFSettings",
    "HandObjectEKFStep",
    "HandObjectObservation",
    "HandObjectOptimizer",
    "HandObjectResult",
    "HandObjectSettings",
    "ManoParams",
    "load_keypoints",
    "load_mano_params",
    "mano_params_from_dicts",
    "mano_rigid_transform",
    "pose_delta",
    "save_mano_params",
]
