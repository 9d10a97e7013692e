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
    def from_config(cls, name: str = "camera") -> "PinholeCamera":
        config = load_config(name)
        return cls(int(config["width"]), int(config["height"]), float(config["fx"]),
                   float(config["fy"]), float(config["cx"]), float(config["cy"]),
                   config.get("frame_id", "camera_color_optical_frame"))

    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int,
                    frame_id: str = "camera_color_optical_frame") -> "PinholeCamera":
        return cls(int(width), int(height), float(K[0, 0]), float(K[1, 1]), float(K[0, 2]),
                   float(K[1, 2]), frame_id)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def ray_directions(self) -> np.ndarray:
        """(H, W, 3) directions through pixel centres, scaled to z = 1 (t along them = depth)."""
        # OpenCV convention: pixel (u, v) has its centre at continuous coordinate (u, v).
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64),
                           np.arange(self.height, dtype=np.float64))
        x = (u - self.cx) / self.fx
        y = (v - self.cy) / self.fy
        return np.stack([x, y, np.ones_like(x)], axis=-1)

    def silhouette(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(H, W) bool: pixels whose centre ray hits the mesh (camera frame: (V, 3), (F, 3)).
        Exact (Open3D/Embree ray cast), and only rays inside the mesh's projected box are cast."""
        from tactile_pose_refiner.core.geometry import open3d_mesh
        import open3d as o3d   # here: the camera model itself stays numpy-only

        hit = np.zeros((self.height, self.width), dtype=bool)
        vertices = np.asarray(vertices, dtype=np.float64)
        front = vertices[vertices[:, 2] > 1e-6]
        if len(faces) == 0 or len(front) == 0:
            return hit
        # A mesh crossing the camera plane projects anywhere: cast every ray then.
        pixels = self.project(front) if len(front) == len(vertices) else None
        u0, v0, u1, v1 = 0, 0, self.width - 1, self.height - 1
        if pixels is not None and np.isfinite(pixels).all():
            u0, v0 = max(int(np.floor(pixels[:, 0].min())), 0), max(int(np.floor(pixels[:, 1].min())), 0)
            u1 = min(int(np.ceil(pixels[:, 0].max())), self.width - 1)
            v1 = min(int(np.ceil(pixels[:, 1].max())), self.height - 1)
            if u1 < u0 or v1 < v0:
                return hit
        directions = self.ray_directions()[v0:v1 + 1, u0:u1 + 1].reshape(-1, 3)
        rays = np.concatenate([np.zeros_like(directions), directions], axis=1).astype(np.float32)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(open3d_mesh(vertices, faces))
        t_hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
        hit[v0:v1 + 1, u0:u1 + 1] = np.isfinite(t_hit).reshape(v1 - v0 + 1, u1 - u0 + 1)
        return hit

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixel coordinates (u, v)."""
        points = np.asarray(points, dtype=np.float64)
        return np.stack([self.fx * points[:, 0] / points[:, 2] + self.cx,
                         self.fy * points[:, 1] / points[:, 2] + self.cy], axis=1)

    def backproject(self, depth_m: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Depth image (H, W) in metres (0 = invalid) [and a bool mask] -> (N, 3) points."""
        valid = np.isfinite(depth_m) & (depth_m > 0)
        if mask is not None:
            valid &= mask.astype(bool)
        v, u = np.nonzero(valid)
        z = depth_m[v, u]
        return np.stack([(u - self.cx) * z / self.fx, (v - self.cy) * z / self.fy, z], axis=1)


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """Metres (0/NaN invalid) -> uint16 millimetres (0 invalid), as a RealSense publishes."""
    depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0)
    return np.clip(np.round(depth * 1000.0), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def depth_from_millimetres(depth_mm: np.ndarray) -> np.ndarray:
    return np.asarray(depth_mm, dtype=np.float64) / 1000.0
