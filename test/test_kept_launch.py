"""``render.warp_views.KeptLaunch``: a recorded CPU launch replayed through its kept argument structure runs the same
kernel on the same arguments as warp's own replay, also after its dimensions or a parameter change."""

import numpy as np  # no `from __future__ import annotations`: warp reads the kernel annotations as objects
import warp as wp

from handypriors_core.render.warp_views import KeptLaunch


@wp.kernel
def _scaled_copy(src: wp.array(dtype=wp.float32), scale: float, dst: wp.array(dtype=wp.float32)):
    i = wp.tid()
    dst[i] = src[i] * scale + dst[i]


def test_kept_launch_replays_the_recorded_launch_and_follows_its_changes():
    src = wp.array(np.arange(1.0, 6.0, dtype=np.float32), device="cpu")
    other = wp.array(np.full(5, 10.0, dtype=np.float32), device="cpu")
    kept_dst, warp_dst = (wp.zeros(5, dtype=wp.float32, device="cpu") for _ in range(2))
    kept = KeptLaunch(wp.launch(_scaled_copy, dim=5, inputs=[src, 2.0, kept_dst], device="cpu", record_cmd=True))
    reference = wp.launch(_scaled_copy, dim=5, inputs=[src, 2.0, warp_dst], device="cpu", record_cmd=True)

    def both():
        kept.launch()
        reference.launch()
        assert np.array_equal(kept_dst.numpy(), warp_dst.numpy())
        return kept_dst.numpy().copy()

    assert np.array_equal(both(), [2, 4, 6, 8, 10])
    assert np.array_equal(both(), [4, 8, 12, 16, 20])  # accumulates: the kernel ran once per call
    for launch in (kept, reference):
        launch.set_param_at_index(1, -1.0)  # a scalar
    assert np.array_equal(both(), [3, 6, 9, 12, 15])
    for launch in (kept, reference):
        launch.set_param_at_index(0, other)  # an array
        launch.set_dim(2)
    assert np.array_equal(both(), [-7, -4, 9, 12, 15])
