"""The one overlay module (``handypriors_core.visualization.overlay``), used by the CLI and the node."""

from __future__ import annotations

import numpy as np
import pytest

from handypriors_core.errors import ShapeError
from handypriors_core.visualization import overlay


def _grey(h: int = 60, w: int = 80) -> np.ndarray:
    return np.full((h, w, 3), 100, np.uint8)


def _dominant(pixel: np.ndarray) -> int:
    return int(np.argmax(pixel.astype(int)))


@pytest.mark.parametrize(("status", "channel"), [("tracking", 1), ("lost", 0)])
def test_instance_overlay_outlines_the_object_in_its_status_colour(status, channel):
    rgb = _grey()
    instance = np.full((60, 80), -1)
    instance[20:40, 30:50] = 1  # object
    instance[5:15, 5:25] = 0  # hand
    out = overlay.instance_overlay(rgb, instance, hand_id=0, object_id=1, status=status)
    assert (rgb == 100).all(), "the input image must not be modified"
    assert _dominant(out[20, 40]) == channel  # on the object's outline: green while tracking, red when lost
    assert (out[30, 40] == 100).all() and (out[55, 70] == 100).all()  # inside and far outside: untouched
    assert _dominant(out[5, 15]) == 2  # the hand's outline is blue


def test_instance_overlay_draws_axes_contacts_and_label():
    rgb = _grey(120, 160)
    instance = np.full((120, 160), -1)
    axes = np.array([[80.0, 60.0], [120.0, 60.0], [80.0, 20.0], [70.0, 70.0]])  # origin, x, y, z ends [px]
    out = overlay.instance_overlay(rgb, instance, 0, 1, "tracking", axes_uv=axes,
                                   contacts_uv=np.array([[20.0, 100.0]]), label="#3 tracking q=0.90")
    assert _dominant(out[60, 100]) == 0 and _dominant(out[40, 80]) == 1  # x axis red, y axis green
    assert tuple(out[100, 20]) == overlay.DOT_COLOUR
    assert (out[:20, :60] != 100).any()  # the label, top left


def test_tracking_overlay_projects_the_object_and_keeps_the_image_size():
    rgb = _grey()
    K = np.array([[50.0, 0, 40], [0, 50.0, 30], [0, 0, 1]])
    verts = np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.1, 0.1, 1.0], [-0.1, 0.1, 1.0]])  # a square, 1 m away
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    out = overlay.tracking_overlay(rgb, K, None, verts, faces)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert _dominant(out[25, 40]) == 1  # the projected square's top edge (y = 30 - 5 px) is outlined in green
    assert (out[5, 5] == 100).all()
    with pytest.raises(ShapeError):
        overlay.tracking_overlay(rgb[..., 0], K, None, verts, faces)


def test_the_node_uses_the_same_module():
    pytest.importorskip("rclpy")
    from handypriors_ros import overlay as node_overlay

    assert node_overlay.tracking_overlay is overlay.tracking_overlay
    assert set(node_overlay.__all__) == set(overlay.__all__)
