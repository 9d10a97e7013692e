"""Rigid poses: 4x4 matrices and ROS-order quaternions (x, y, z, w). Metres, radians.

Convention: T_a_b maps points from frame b to frame a (p_a = T_a_b @ p_b); object poses are
T_camera_object.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def pose_matrix(translation, quaternion_xyzw) -> np.ndarray:
    """(3,), (4,) -> (4, 4) homogeneous transform."""
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat(np.asarray(quaternion_xyzw, dtype=np.float64)).as_matrix()
    matrix[:3, 3] = translation
    return matrix


def pose_fields_to_matrix(pose) -> np.ndarray:
    """Any object with geometry_msgs/Pose's fields (rclpy or rosbags) -> (4, 4); all NaN when the
    quaternion is zero or not finite (callers label a non-finite pose; scipy would raise)."""
    p, q = pose.position, pose.orientation
    quaternion = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not np.isfinite(quaternion).all() or np.linalg.norm(quaternion) < 1e-9:
        return np.full((4, 4), np.nan)
    return pose_matrix([p.x, p.y, p.z], quaternion)


def matrix_to_pose(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4, 4) -> translation (3,), unit quaternion (x, y, z, w) with w >= 0."""
    translations, quaternions = matrices_to_poses(np.asarray(matrix)[None])
    return translations[0], quaternions[0]


def matrices_to_poses(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, 4) -> translations (N, 3), unit quaternions (N, 4) (x, y, z, w) with w >= 0; one
    scipy call for all (a call per matrix cost the hand's 20 links 6 ms a joint state)."""
    matrices = np.asarray(matrices)
    quaternions = Rotation.from_matrix(matrices[:, :3, :3]).as_quat()
    quaternions *= np.where(quaternions[:, 3:] < 0, -1.0, 1.0)
    return matrices[:, :3, 3].copy(), quaternions


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) transform to (N, 3) points."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def invert(matrix: np.ndarray) -> np.ndarray:
    inverse = np.eye(4)
    inverse[:3, :3] = matrix[:3, :3].T
    inverse[:3, 3] = -matrix[:3, :3].T @ matrix[:3, 3]
    return inverse


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle [rad] of the rotation between (3, 3) rotations a and b."""
    return float(np.arccos(np.clip((np.trace(a.T @ b) - 1.0) / 2.0, -1.0, 1.0)))


def rotation_about(axis, angle: float) -> np.ndarray:
    """(4, 4) rotation of `angle` radians about `axis`."""
    matrix = np.eye(4)
    axis = np.asarray(axis, dtype=np.float64)
    matrix[:3, :3] = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()
    return matrix


def translation(offset) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix


def look_at(eye, target, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """Pose of an optical frame (z forward, x right, y down) at `eye` looking at `target`."""
    z = np.asarray(target, float) - np.asarray(eye, float)
    z /= np.linalg.norm(z)
    x = np.cross(-np.asarray(up, float), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([x, y, z], axis=1)
    matrix[:3, 3] = eye
    return matrix


def open3d_mesh(vertices: np.ndarray, faces: np.ndarray):
    """(V, 3), (F, 3) -> an Open3D tensor TriangleMesh (float32 / int32), e.g. for ray casting."""
    import open3d as o3d  # here, not at module level: the pose helpers above must stay light

    mesh = o3d.t.geometry.TriangleMesh()
    mesh.vertex.positions = o3d.core.Tensor(np.asarray(vertices, dtype=np.float32))
    mesh.triangle.indices = o3d.core.Tensor(np.asarray(faces, dtype=np.int32))
    return mesh
