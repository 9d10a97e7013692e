"""Pinhole camera (optical frame: x right, y down, z forward), projection and depth I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tactile_pose_refiner.core.resources import load_config


@dataclass(frozen=True)
class PinholeCamera:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    frame_id: str = "camera_color_optical_frame"

    @classmethod
    def from_config(cls, name: str = "camera") -> PinholeCamera:
        config = load_config(name)
        return cls(
            int(config["width"]),
            int(config["height"]),
            float(config["fx"]),
            float(config["fy"]),
            float(config["cx"]),
            float(config["cy"]),
            config.get("frame_id", "camera_color_optical_frame"),
        )

    @classmethod
    def from_matrix(
        cls, K: np.ndarray, width: int, height: int, frame_id: str = "camera_color_optical_frame"
    ) -> PinholeCamera:
        return cls(int(width), int(height), float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), frame_id)

    def implausible(self) -> str | None:
        """Why these intrinsics cannot be a real camera's, or None: a field of view outside
        5-170 deg, pixels more than 2:1 non-square, the principal point outside the image."""
        if min(self.width, self.height) <= 0:
            return f"image size {self.width}x{self.height}"
        if not np.isfinite([self.fx, self.fy, self.cx, self.cy]).all() or min(self.fx, self.fy) <= 0:
            return f"focal lengths {self.fx}, {self.fy} must be finite and positive"
        fov_deg = np.degrees(2 * np.arctan(self.width / (2 * self.fx)))
        if not 5.0 <= fov_deg <= 170.0:
            return f"fx {self.fx:g} px gives a {fov_deg:.3g} deg field of view over {self.width} px"
        if not 0.5 <= self.fx / self.fy <= 2.0:
            return f"fx {self.fx:g} and fy {self.fy:g} px differ by more than 2:1"
        if not (0 <= self.cx <= self.width and 0 <= self.cy <= self.height):
            return f"principal point ({self.cx:g}, {self.cy:g}) outside the {self.width}x{self.height} image"
        return None

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def ray_directions(self) -> np.ndarray:
        """(H, W, 3) directions through pixel centres, scaled to z = 1 (t along them = depth)."""
        # OpenCV convention: pixel (u, v) has its centre at continuous coordinate (u, v).
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        x = (u - self.cx) / self.fx
        y = (v - self.cy) / self.fy
        return np.stack([x, y, np.ones_like(x)], axis=-1)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixel coordinates (u, v)."""
        points = np.asarray(points, dtype=np.float64)
        return np.stack(
            [self.fx * points[:, 0] / points[:, 2] + self.cx, self.fy * points[:, 1] / points[:, 2] + self.cy], axis=1
        )

    def backproject(self, depth_m: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Depth image (H, W) in metres (0 = invalid) [and a bool mask] -> (N, 3) points."""
        valid = np.isfinite(depth_m) & (depth_m > 0)
        if mask is not None:
            valid &= mask.astype(bool)
        v, u = np.nonzero(valid)
        return self.backproject_pixels(u, v, depth_m[v, u])

    def backproject_pixels(self, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Pixel columns u, rows v (N,) at depths z [m] -> (N, 3) camera-frame points."""
        return np.stack([(u - self.cx) * z / self.fx, (v - self.cy) * z / self.fy, z], axis=1)


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """Metres (0/NaN/inf invalid) -> uint16 millimetres (0 invalid), as a RealSense publishes;
    a depth the format cannot hold (negative, beyond 65.535 m: no return, e.g. Isaac Sim's inf
    background) is invalid too, not clipped to a false far reading."""
    millimetres = np.round(np.asarray(depth_m, dtype=np.float64) * 1000.0)
    representable = np.isfinite(millimetres) & (millimetres >= 0) & (millimetres <= np.iinfo(np.uint16).max)
    return np.where(representable, millimetres, 0.0).astype(np.uint16)


def depth_from_millimetres(depth_mm: np.ndarray) -> np.ndarray:
    return np.asarray(depth_mm, dtype=np.float64) / 1000.0
