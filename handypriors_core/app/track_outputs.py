"""The visual outputs of ``handypriors track``: overlay images, the overlay video and the result bag.

:func:`draw_overlay` renders one result (hard render of hand and object at the estimate, object axes and
contacts projected) and draws it with :mod:`..visualization.overlay`; :func:`write_visual_outputs` makes one pass
over the input bag for the video (:mod:`..visualization.video`) and the result bag (:mod:`..io.result_bag`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..io.result_bag import ResultBag
from ..visualization.video import OverlayVideo

if TYPE_CHECKING:
    from .track import FrameResult, TrackOptions, TrackSummary

__all__ = ["draw_overlay", "write_visual_outputs"]


def draw_overlay(rgb, scene, result: FrameResult):
    """Hand (blue) and object (green) outlines from hard renders, object axes and contacts over ``rgb (H, W, 3)``.

    ``scene``: the tracker's :class:`~handypriors_core.estimation.scene.HandObjectScene`; ``result`` needs
    ``camera``, ``object2camera`` and (for the hand) ``joint_angles`` / ``hand2camera``. Returns a new
    ``(H, W, 3)`` uint8 RGB numpy array.
    """
    import torch

    from ..estimation.scene import HAND, OBJECT
    from ..visualization.overlay import instance_overlay

    cam = result.camera.to(scene.device, torch.float32)
    pose = result.object2camera.to(scene.device, torch.float32)[None]
    with torch.no_grad():
        if result.joint_angles is not None:
            hand = scene.pose_hand(result.joint_angles, result.hand2camera)
            verts, faces, inst = scene.scene_mesh(pose, hand)
            out = scene.renderer.hard(verts, faces, cam, face_instance=inst)
        else:
            verts = scene.object_verts(pose)
            out = scene.renderer.hard(verts, scene.object_faces, cam,
                                      face_instance=torch.full((scene.object_faces.shape[0],), OBJECT))
        instance = out.instance[0].cpu().numpy()
    # object axes (x red, y green, z blue), 40 % of the object's size
    length = 0.4 * float(scene.object.diameter)
    axes = torch.tensor([[0, 0, 0], [length, 0, 0], [0, length, 0], [0, 0, length]], dtype=torch.float64)
    T = result.object2camera.double().cpu()
    pts = axes @ T[:3, :3].T + T[:3, 3]
    axes_uv = None
    if bool((pts[:, 2] > 0.01).all()):
        axes_uv = result.camera.to(None, torch.float64).project(pts[None])[0].numpy()
    contacts_uv = None
    if result.contact_points is not None and len(result.contact_points):
        cp = result.contact_points.to(torch.float64)
        front = cp[:, 2] > 0.01
        if bool(front.any()):
            contacts_uv = result.camera.to(None, torch.float64).project(cp[front][None])[0].numpy()
    return instance_overlay(rgb, instance, HAND, OBJECT, result.status, axes_uv, contacts_uv,
                            f"#{result.index} {result.status} q={result.quality:.2f}")


def write_visual_outputs(opts: TrackOptions, reader, scene, summary: TrackSummary) -> None:
    """One pass over the input bag: overlays for the video, and the result bag (input topics + results)."""
    import numpy as np

    from ..io.bag_files import open_bag
    from ..io.bag_messages import decode_colour, stamp_to_ns

    by_index = {r.index: r for r in summary.results}
    stamps = sorted(r.stamp_ns for r in summary.results)
    fps = 1e9 / float(np.median(np.diff(stamps))) if len(stamps) > 1 else 30.0
    video = OverlayVideo(opts.video, fps, len(summary.results), opts.report) if opts.video is not None else None
    bag_out = ResultBag(opts.out_bag, reader.typestore, summary.camera_frame, opts.object_frame,
                        opts.object_mesh) if opts.out_bag is not None else None
    src = open_bag(opts.bag)
    ts = reader.typestore
    try:
        conns = src.connections if bag_out is not None else [c for c in src.connections
                                                             if c.topic == reader.image_topic]
        index = 0
        last_index = max(by_index) if by_index else -1
        for conn, t_log, raw in src.messages(connections=conns):
            if bag_out is not None:
                bag_out.copy(conn, t_log, raw)
            if conn.topic != reader.image_topic:
                continue
            i = index
            index += 1
            r = by_index.get(i)
            if r is None:
                if i > last_index and bag_out is None:
                    break
                continue
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            rgb = decode_colour(msg, conn.msgtype)
            if r.camera is None:
                r.camera = reader._camera(stamp_to_ns(msg.header.stamp) or t_log, rgb.shape[1], rgb.shape[0])
            overlay = draw_overlay(rgb, scene, r)
            if video is not None:
                video.add(overlay)
            if bag_out is not None:
                bag_out.add_results(r, t_log, overlay, msg.header)
    finally:
        src.close()
        if bag_out is not None:
            path = bag_out.close()
            summary.outputs["bag"] = path
        if video is not None:
            path = video.close()
            if path is not None:
                summary.outputs["video"] = path
