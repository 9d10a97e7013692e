"""Lens distortion removed at the graph's door: the refiner, the renderer and the back-projection
assume a pinhole camera, so rgbd_node rectifies images whose CameraInfo carries a distortion
(ROS `plumb_bob` or `rational_polynomial`) onto the same K with no distortion.

OpenCV has no wheel in this environment; the models are a few lines of numpy, and the source
pixels of every rectified pixel are computed once per camera (then ~20 ms a 640 x 480 RGB-D frame,
mostly the colour's bilinear; depth and mask are a lookup).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODELS = ("plumb_bob", "rational_polynomial")


class DistortionError(ValueError):
    """A distortion this package cannot remove (named, with what to do)."""


@dataclass(frozen=True)
class Rectifier:
    """Where each rectified pixel samples the distorted image, precomputed once per camera:
    the nearest source pixel (depth, masks) and the four bilinear neighbours with their weights
    (colour); `inside` marks pixels whose source lies in the image."""

    nearest: np.ndarray  # (H, W) flat index of the nearest source pixel
    corners: np.ndarray  # (4, H, W) flat indices of the bilinear neighbours
    weights: np.ndarray  # (4, H, W)
    inside: np.ndarray  # (H, W) bool

    @classmethod
    def for_camera(cls, K: np.ndarray, model: str, coefficients, width: int, height: int) -> Rectifier | None:
        """None where there is nothing to remove (no coefficients, or all zero)."""
        d = np.asarray(coefficients, dtype=np.float64)
        if d.size == 0 or not np.any(d):
            return None
        if model not in MODELS:
            raise DistortionError(f"distortion model {model!r} is not supported (rectify upstream, e.g. image_proc)")
        cols, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        xd, yd = distort((cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], d, model)
        u, v = xd * K[0, 0] + K[0, 2], yd * K[1, 1] + K[1, 2]
        inside = (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
        nearest = np.clip(np.rint(v), 0, height - 1).astype(np.int64) * width + np.clip(np.rint(u), 0, width - 1)
        u0, v0 = np.clip(np.floor(u), 0, width - 2), np.clip(np.floor(v), 0, height - 2)
        fu, fv = np.clip(u - u0, 0.0, 1.0), np.clip(v - v0, 0.0, 1.0)
        base = (v0 * width + u0).astype(np.int64)
        corners = np.stack([base, base + 1, base + width, base + width + 1])
        weights = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv]).astype(np.float32)
        return cls(nearest.astype(np.int64), corners, weights, inside)

    def rectify(self, image: np.ndarray, smooth: bool) -> np.ndarray:
        """The image on the pinhole grid: bilinear where `smooth` (colour), else nearest (depth,
        masks: never blended); pixels whose source lies outside the image become 0 (invalid
        depth, no object)."""
        flat = image.reshape(image.shape[0] * image.shape[1], -1)
        if smooth:
            values = sum(self.weights[k, ..., None] * flat[self.corners[k]] for k in range(4))
            out = np.rint(values).astype(image.dtype)
        else:
            out = flat[self.nearest]
        out[~self.inside] = 0
        return out.reshape(image.shape)


def distort(x: np.ndarray, y: np.ndarray, d: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pinhole coordinates -> where the lens puts them (ROS camera_info models:
    plumb_bob k1 k2 p1 p2 k3; rational_polynomial k1 k2 p1 p2 k3 k4 k5 k6)."""
    k = np.zeros(8)
    k[: min(8, d.size)] = d[:8]
    k1, k2, p1, p2, k3, k4, k5, k6 = k
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if model == "rational_polynomial":
        radial = radial / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd
