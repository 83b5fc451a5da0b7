"""Raw image buffers -> arrays (the decoder shared by the bag reader and the ROS node): padding, endianness, the
trailing bytes recorded messages may carry, and the colour / depth normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from handypriors_core.errors import InvalidValueError
from handypriors_core.io.image_encoding import decode_image_buffer, depth_to_metres, rgb_to_color


def test_padded_big_endian_depth_with_trailing_bytes():
    mm = np.array([[0, 1000, 65535], [250, 7, 1]], dtype=np.uint16)
    step = 3 * 2 + 4  # 4 bytes of row padding
    rows = np.zeros((2, step), dtype=np.uint8)
    rows[:, :6] = mm.astype(">u2").view(np.uint8).reshape(2, 6)
    data = rows.tobytes()
    decoded = decode_image_buffer(data, 2, 3, step, "16UC1", is_bigendian=True)
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, mm)
    with pytest.raises(InvalidValueError, match="height \\* step"):
        decode_image_buffer(data + b"\0\0", 2, 3, step, "16UC1", is_bigendian=True)
    again = decode_image_buffer(data + b"\0\0", 2, 3, step, "16UC1", is_bigendian=True, trailing_bytes=True)
    assert np.array_equal(again, mm)
    with pytest.raises(InvalidValueError, match="height \\* step"):  # too short is never accepted
        decode_image_buffer(data[:-1], 2, 3, step, "16UC1", is_bigendian=True, trailing_bytes=True)
    metres = depth_to_metres(decoded, "16UC1")
    assert np.isnan(metres[0, 0]) and metres[0, 1] == np.float32(1.0) and metres[1, 2] == np.float32(0.001)


def test_colour_encodings_become_rgb():
    rgb = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    bgra = np.concatenate([rgb[..., ::-1], np.full((2, 2, 1), 255, np.uint8)], -1)
    decoded = decode_image_buffer(bgra.tobytes(), 2, 2, 8, "bgra8")
    assert np.array_equal(rgb_to_color(decoded, "bgra8"), rgb)
    mono = decode_image_buffer(rgb[..., 0].tobytes(), 2, 2, 2, "mono8")
    assert np.array_equal(rgb_to_color(mono, "mono8"), np.repeat(rgb[..., :1], 3, -1))
