"""Raw image buffers (as sensor_msgs/Image carries them) -> numpy arrays, with checks.

ROS-free: the arguments are the message's fields. Colour becomes (H, W, 3) uint8 RGB, depth
(H, W) uint16 millimetres with 0 = invalid (the RealSense convention the core uses), a mask
(H, W) uint8. Unsupported encodings and inconsistent sizes raise ImageInputError.
"""

from __future__ import annotations

import numpy as np

from tactile_pose_refiner.core.scene.camera import depth_to_millimetres

COLOR_ENCODINGS = {"rgb8": (3, [0, 1, 2]), "bgr8": (3, [2, 1, 0]), "rgba8": (4, [0, 1, 2]), "bgra8": (4, [2, 1, 0])}
DEPTH_ENCODINGS = {"16UC1": np.dtype(np.uint16), "mono16": np.dtype(np.uint16), "32FC1": np.dtype(np.float32)}
MASK_ENCODINGS = ("mono8", "8UC1")


class ImageInputError(ValueError):
    """An image cannot be used: unsupported encoding, or size and buffer disagree."""


def pixels(
    encoding: str, height: int, width: int, step: int, data, dtype: np.dtype, channels: int, bigendian: bool = False
) -> np.ndarray:
    """(H, W[, C]) view of a row-padded buffer; checks the buffer holds H rows of `step` bytes."""
    try:
        buffer = np.frombuffer(data, dtype=np.uint8)  # bytes, array.array, numpy: no copy
    except (TypeError, ValueError):
        buffer = np.asarray(data, dtype=np.uint8).reshape(-1)
    row_bytes = width * channels * dtype.itemsize
    if height <= 0 or width <= 0:
        raise ImageInputError(f"{encoding} image is empty ({width}x{height})")
    if step < row_bytes or buffer.size < height * step:
        raise ImageInputError(
            f"{encoding} image {width}x{height}: step {step} and "
            f"{buffer.size} bytes do not hold its rows of {row_bytes} bytes"
        )
    rows = buffer[: height * step].reshape(height, step)[:, :row_bytes]
    values = np.ascontiguousarray(rows).view(dtype.newbyteorder(">" if bigendian else "<"))
    values = values.astype(dtype)
    return values.reshape(height, width, channels) if channels > 1 else values.reshape(height, width)


def decode_color(encoding: str, height: int, width: int, step: int, data, bigendian: bool = False) -> np.ndarray:
    if encoding not in COLOR_ENCODINGS:
        raise ImageInputError(f"colour encoding '{encoding}' is not supported (use one of {sorted(COLOR_ENCODINGS)})")
    channels, order = COLOR_ENCODINGS[encoding]
    image = pixels(encoding, height, width, step, data, np.dtype(np.uint8), channels)
    return np.ascontiguousarray(image[:, :, order])


def decode_depth_mm(encoding: str, height: int, width: int, step: int, data, bigendian: bool = False) -> np.ndarray:
    """16UC1 millimetres or 32FC1 metres -> uint16 mm; NaN, inf and negative depths become 0."""
    if encoding not in DEPTH_ENCODINGS:
        raise ImageInputError(f"depth encoding '{encoding}' is not supported (16UC1 millimetres or 32FC1 metres)")
    depth = pixels(encoding, height, width, step, data, DEPTH_ENCODINGS[encoding], 1, bigendian)
    if depth.dtype == np.uint16:
        return depth
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)
    return depth_to_millimetres(depth)


def decode_mask(encoding: str, height: int, width: int, step: int, data, bigendian: bool = False) -> np.ndarray:
    if encoding not in MASK_ENCODINGS:
        raise ImageInputError(f"mask encoding '{encoding}' is not supported (mono8, 255 = object)")
    return pixels(encoding, height, width, step, data, np.dtype(np.uint8), 1)


def image_from_message(msg, kind: str) -> np.ndarray:
    """Any object with sensor_msgs/Image's fields (rclpy or rosbags) -> array of `kind`
    (color, depth or mask); raises ImageInputError."""
    decoder = {"color": decode_color, "depth": decode_depth_mm, "mask": decode_mask}[kind]
    return decoder(msg.encoding, int(msg.height), int(msg.width), int(msg.step), msg.data, bool(msg.is_bigendian))
