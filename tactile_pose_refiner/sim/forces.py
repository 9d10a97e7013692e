"""Contact forces that obey Newton's laws (`tpr generate --forces balanced`).

The skin's penalty model (config/tactile.yaml) says how hard each finger squeezes; here the
taxels' forces on the object are then moved as little as possible (least squares) so that
together they carry the object's weight and its accelerations:

    sum_i f_i = m (a - g),    sum_i (p_i - c) x f_i = I alpha + omega x I omega

(c the centre of mass, a its acceleration, alpha and omega the object's angular acceleration and
velocity, all along the episode's true trajectory; g gravity in the camera frame, fixed by the
hand's rest pose: palm up, config/generator.yaml forces). Readings follow skin.taxel_frames'
convention, in sensor units with force_scale = tactile.yaml newtons_per_unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog, nnls
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.scene.skin import taxel_tangents

BALANCE_TOLERANCE = 1e-4  # [N, N m] the balance solved inside friction cones (noise per taxel: ~0.03 N)


@dataclass(frozen=True)
class ObjectMotion:
    """Per frame, camera frame: centre-of-mass acceleration, angular velocity and acceleration."""

    acceleration: np.ndarray  # (K, 3) [m/s^2]
    angular_velocity: np.ndarray  # (K, 3) [rad/s]
    angular_acceleration: np.ndarray  # (K, 3) [rad/s^2]


def object_motion(T_cam_obj: list[np.ndarray], com_obj: np.ndarray, dt: float) -> ObjectMotion:
    """Derivatives of a pose sequence (central differences; one-sided at the ends)."""
    poses = np.asarray(T_cam_obj)
    com = poses[:, :3, :3] @ com_obj + poses[:, :3, 3]
    if len(poses) < 3:
        zeros = np.zeros((len(poses), 3))
        return ObjectMotion(zeros, zeros, zeros)
    acceleration = np.gradient(np.gradient(com, dt, axis=0), dt, axis=0)
    rotations = Rotation.from_matrix(poses[:, :3, :3])
    between = (rotations[1:] * rotations[:-1].inv()).as_rotvec() / dt  # world-frame rates at the midpoints
    omega = np.concatenate([between[:1], (between[1:] + between[:-1]) / 2, between[-1:]])
    return ObjectMotion(acceleration, omega, np.gradient(omega, dt, axis=0))


def required_wrench(
    body: RigidBody, T_cam_obj: np.ndarray, motion: ObjectMotion, k: int, gravity_cam: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(force, torque about the centre of mass) the contacts must exert at frame k, object frame."""
    R = T_cam_obj[:3, :3]
    force = body.mass * (motion.acceleration[k] - gravity_cam)
    inertia = R @ body.inertia @ R.T
    omega = motion.angular_velocity[k]
    torque = inertia @ motion.angular_acceleration[k] + np.cross(omega, inertia @ omega)
    return R.T @ force, R.T @ torque


def balanced_forces(
    squeeze: np.ndarray, positions: np.ndarray, com: np.ndarray, force: np.ndarray, torque: np.ndarray
) -> np.ndarray:
    """The forces (K, 3) on the object closest to `squeeze` (K, 3) whose sum is `force` and whose
    moment about `com` is `torque` (all one frame); with fewer than three contacts the moment is
    met as far as it can be (least squares)."""
    if len(squeeze) == 0:
        return squeeze
    A, b = wrench_constraint(positions, com, force, torque)
    correction = A.T @ np.linalg.lstsq(A @ A.T, b - A @ squeeze.ravel(), rcond=None)[0]
    return squeeze + correction.reshape(-1, 3)


def wrench_constraint(positions, com, force, torque) -> tuple[np.ndarray, np.ndarray]:
    """(A (6, 3K), b (6,)): A f = b says the K forces f sum to `force` with moment `torque` about com."""
    A = np.zeros((6, 3 * len(positions)))
    for i, (x, y, z) in enumerate(positions - com):
        A[:3, 3 * i : 3 * i + 3] = np.eye(3)
        A[3:, 3 * i : 3 * i + 3] = [[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]]
    return A, np.concatenate([force, torque])


def within_friction_cones(
    squeeze: np.ndarray, normals: np.ndarray, constraint: tuple, mu: float, equality_weight: float = 1e6
) -> np.ndarray | None:
    """The balanced forces nearest `squeeze` that also push (never pull) and stay inside their
    friction cones (inscribed pyramids: non-negative least squares, the balance as heavily
    weighted rows); None where no such forces exist (too few contacts for the load)."""
    A, b = constraint
    pyramid = friction_pyramid(normals, mu)
    system = np.vstack([pyramid, equality_weight * (A @ pyramid)])
    target = np.concatenate([squeeze.ravel(), equality_weight * b])
    weights, _ = nnls(system, target, maxiter=50 * system.shape[1])
    solved = (pyramid @ weights).reshape(-1, 3)
    if np.abs(A @ solved.ravel() - b).max() > BALANCE_TOLERANCE:
        return None
    return solved


def friction_pyramid(normals: np.ndarray, mu: float, edges: int = 8) -> np.ndarray:
    """(3K, edges K): block i holds the edges of contact i's friction cone (an inscribed pyramid)
    as columns, so forces P @ lam with lam >= 0 push and stay inside the cones."""
    x_axes, y_axes = taxel_tangents(normals)
    angles = np.linspace(0.0, 2 * np.pi, edges, endpoint=False)
    tilt = mu * np.cos(np.pi / edges)  # inscribed: the pyramid's faces touch the cone
    pyramid = np.zeros((3 * len(normals), edges * len(normals)))
    for i, (n, x, y) in enumerate(zip(normals, x_axes, y_axes)):
        pyramid[3 * i : 3 * i + 3, edges * i : edges * (i + 1)] = n[:, None] + tilt * (
            np.outer(x, np.cos(angles)) + np.outer(y, np.sin(angles))
        )
    return pyramid


def holding_force(positions: np.ndarray, com: np.ndarray, pyramid: np.ndarray, load: np.ndarray) -> float:
    """The least total contact force [N per N of load] with which the contacts, inside their
    friction cones, carry `load` (a force on the object through com, no torque); inf if they cannot."""
    A, b = wrench_constraint(positions, com, load, np.zeros(3))
    result = linprog(np.ones(pyramid.shape[1]), A_eq=A @ pyramid, b_eq=b, bounds=(0, None), method="highs")
    return float(result.fun) / float(np.linalg.norm(load)) if result.status == 0 else np.inf


def holding_direction(
    positions: np.ndarray, normals: np.ndarray, com: np.ndarray, mu: float, tilt_rad: float, candidates: int = 200
) -> np.ndarray | None:
    """The direction of gravity (unit, the contacts' frame) that these contacts hold best: the
    least force needed, also with gravity tilted by up to tilt_rad (the arm's motion); None when
    no direction can be held. A robot carries a grasped object the way its grasp holds it."""
    if len(positions) < 2:
        return None
    pyramid = friction_pyramid(normals, mu)
    golden = np.pi * (3.0 - np.sqrt(5.0))  # a Fibonacci sphere: evenly spread directions
    z = 1.0 - 2.0 * (np.arange(candidates) + 0.5) / candidates
    ring = np.sqrt(1.0 - z**2)
    turn = golden * np.arange(candidates)
    directions = np.stack([ring * np.cos(turn), ring * np.sin(turn), z], axis=1)
    cost = np.array([holding_force(positions, com, pyramid, -d) for d in directions])
    near = directions @ directions.T >= np.cos(tilt_rad)
    worst = np.where(near, cost[None, :], 0.0).max(axis=1)
    best = int(np.argmin(worst))
    return directions[best] if np.isfinite(worst[best]) else None


def outside_friction_cones(forces: np.ndarray, normals: np.ndarray, mu: float) -> int:
    """How many contact forces pull (negative normal part) or leave their friction cone."""
    normal = np.einsum("nc,nc->n", forces, normals)
    tangential = np.linalg.norm(forces - normal[:, None] * normals, axis=1)
    return int(np.sum((normal < 0) | (tangential > mu * normal + 1e-9)))


def readings(forces: np.ndarray, normals: np.ndarray, x_axes: np.ndarray, y_axes: np.ndarray) -> np.ndarray:
    """Forces on the object [N] -> what the taxels read (fx, fy, fz) [N]: the push they feel."""
    return np.stack(
        [
            -np.einsum("nc,nc->n", forces, x_axes),
            -np.einsum("nc,nc->n", forces, y_axes),
            np.einsum("nc,nc->n", forces, normals),
        ],
        axis=1,
    )


@dataclass
class Balance:
    """An episode's balanced forces: the object's true motion and mass properties, gravity, the
    calibration, and how well the frames so far could be balanced."""

    body: RigidBody
    T_cam_obj: list[np.ndarray]
    motion: ObjectMotion
    gravity_cam: np.ndarray
    newtons_per_unit: float
    friction_mu: float
    squeeze_share: float
    worst_residual_n: float = 0.0
    frames_outside_cones: int = 0

    def contact_forces(self, k: int, squeeze_n: np.ndarray, positions: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Forces on the object [N] at frame k from the touching taxels' squeeze (K,) [N] along their normals."""
        force, torque = required_wrench(self.body, self.T_cam_obj[k], self.motion, k, self.gravity_cam)
        squeeze = self.squeeze_share * squeeze_n[:, None] * normals
        solved = balanced_forces(squeeze, positions, self.body.com, force, torque)
        if len(solved) and outside_friction_cones(solved, normals, self.friction_mu):
            constraint = wrench_constraint(positions, self.body.com, force, torque)
            inside = within_friction_cones(squeeze, normals, constraint, self.friction_mu)
            self.frames_outside_cones += inside is None
            solved = solved if inside is None else inside
        self.worst_residual_n = max(self.worst_residual_n, float(np.linalg.norm(solved.sum(axis=0) - force)))
        return solved

    def record(self) -> dict:
        return {
            "forces": "balanced",
            "mass_kg": self.body.mass,
            "gravity_cam_m_s2": [float(v) for v in self.gravity_cam],
            "newtons_per_unit": self.newtons_per_unit,
        }
