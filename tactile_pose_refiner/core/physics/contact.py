"""The object (baked SDF, rigid body) against the fixed hand's surface points: penalty normal force
proportional to penetration (Hunt-Crossley damping), regularised Coulomb friction, semi-implicit
Euler in torch (6 numbers per step, so autograd chains the steps through the Warp kernel)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import warp as wp

from tactile_pose_refiner.core.geometry import invert, rotation_angle, transform_points
from tactile_pose_refiner.core.gradients.base import so3_exp
from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.physics.kernels import ContactWrench, StepBuffers, contact_wrench
from tactile_pose_refiner.core.scene.sdf import SdfGrid


class HandContactModel:
    """Object SDF and rigid body + the fixed hand's surface points (camera frame)."""

    def __init__(
        self, sdf: SdfGrid, body: RigidBody, hand_points: np.ndarray, config: dict, device: str = "cpu"
    ) -> None:
        wp.init()
        self.body, self.config, self.device = body, config, device
        contact = config["contact"]
        self.parameters = [
            float(contact["stiffness_n_per_m"]),
            float(contact["damping_s"]),
            float(contact["friction_mu"]),
            float(contact["friction_eps_m_s"]),
            float(contact["leak"]),
            float(contact["leak_distance_m"]),
            float(contact.get("skin_compliance_m", 0.0)),
        ]
        self.sdf_grid = sdf
        self.sdf = wp.array(sdf.values, dtype=float, device=device)
        self.sdf_gradient = wp.array(sdf.gradient(), dtype=wp.vec3, device=device)
        self.sdf_shape = wp.vec3i(*sdf.values.shape)
        self.sdf_origin = wp.vec3(*sdf.origin.astype(np.float32))
        self.sdf_spacing = float(sdf.spacing)
        self.points = wp.array(np.asarray(hand_points, dtype=np.float32).reshape(-1, 3), dtype=wp.vec3, device=device)
        self.com_local = wp.vec3(*body.com.astype(np.float32))
        self._buffers: list[StepBuffers] = []

    @property
    def point_count(self) -> int:
        return self.points.shape[0]

    def restricted(self, keep: np.ndarray) -> HandContactModel:
        """The same model with only the hand points `keep` ((N,) bool), sharing the SDF arrays."""
        subset = copy.copy(self)
        subset.points = wp.array(self.points.numpy()[keep], dtype=wp.vec3, device=self.device)
        subset._buffers = []
        return subset

    def signed_distances(self, T: np.ndarray) -> np.ndarray:
        """(N,) signed distance of each hand point from the object's surface at pose T plus the
        skin's give [m]: the value the kernel compares with the leak distance."""
        local = transform_points(invert(T), self.points.numpy().astype(np.float64))
        return self.sdf_grid.sample(local) + self.parameters[6]

    def buffers(self, step: int) -> StepBuffers:
        while len(self._buffers) <= step:
            self._buffers.append(StepBuffers(self.device))
        return self._buffers[step]

    def launch(self, state: wp.array, wrench: wp.array) -> None:
        wp.launch(
            contact_wrench,
            dim=self.point_count,
            device=self.device,
            inputs=[
                self.points,
                self.sdf,
                self.sdf_gradient,
                self.sdf_shape,
                self.sdf_origin,
                self.sdf_spacing,
                self.com_local,
                state,
                *self.parameters,
            ],
            outputs=[wrench],
        )

    def rollout(self, rotation: torch.Tensor, translation: torch.Tensor, steps: int, dt: float, gravity) -> Rollout:
        """Semi-implicit Euler from rest at (R, t); differentiable w.r.t. (R, t)."""
        body = self.body
        com_local = torch.as_tensor(body.com, dtype=rotation.dtype, device=rotation.device)
        inertia = torch.as_tensor(body.inertia, dtype=rotation.dtype, device=rotation.device)
        gravity = torch.as_tensor(np.asarray(gravity, float), dtype=rotation.dtype, device=rotation.device)
        R, x = rotation, rotation @ com_local + translation
        v = torch.zeros_like(x)
        w = torch.zeros_like(x)
        penetration, speeds = [], []
        for step in range(steps):
            force, torque, penetration_sq = ContactWrench.apply(self, step, R, x, v, w)
            penetration.append(penetration_sq)
            v = v + dt * (force / body.mass + gravity)
            w = w + dt * torch.linalg.solve(R @ inertia @ R.T, torque)
            x = x + dt * v
            R = so3_exp(w * dt) @ R
            speeds.append(torch.stack([torch.linalg.norm(v.detach()), torch.linalg.norm(w.detach())]))
        path_m, turn_rad = (dt * torch.stack(speeds).sum(dim=0)).tolist() if speeds else (0.0, 0.0)
        return Rollout(
            rotation,
            rotation @ com_local + translation,
            R,
            x,
            torch.stack(penetration) if penetration else torch.zeros(0),
            path_m,
            turn_rad,
        )


@dataclass
class Rollout:
    rotation_start: torch.Tensor
    com_start: torch.Tensor
    rotation_end: torch.Tensor
    com_end: torch.Tensor
    penetration_sq: torch.Tensor  # (steps,) sum over hand points of squared penetration [m^2]
    path_m: float = 0.0  # length of the COM's path [m] ...
    turn_rad: float = 0.0  # ... and the angle turned along the way (sums of the steps)

    def displacement(self) -> torch.Tensor:
        return torch.linalg.norm(self.com_end - self.com_start)

    def rotation_sine(self) -> torch.Tensor:
        """|sin(angle)| of the relative rotation: smooth at zero, unlike arccos of the trace."""
        relative = self.rotation_end @ self.rotation_start.T
        skew = 0.5 * (relative - relative.T)
        return torch.sqrt((skew**2).sum() / 2.0 + 1e-24)


def contact_model(
    sdf: SdfGrid, body: RigidBody, hand_points: np.ndarray, T: np.ndarray, config: dict, device: str = "cpu"
) -> HandContactModel:
    """HandContactModel with the hand points (N, 3, camera frame) within `hand_point_band_m` of
    the object at pose T: the rest cannot touch it, and leaving them out keeps the kernel cheap."""
    points = np.asarray(hand_points, dtype=np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    near = sdf.sample(transform_points(invert(T), points)) < config["hand_point_band_m"]
    return HandContactModel(sdf, body, points[near], config, device)


class ReachableSubset:
    """The hand points a rollout from near a recent pose can touch, and the model restricted to
    them: near a grasp ~1100 of the band's 8600 points on a cracker box (10 mm reach).

    A point whose skin distance stays at or beyond the leak distance adds exactly nothing (the
    kernel returns before any force or gradient). The grid's trilinear distance changes by at
    most sqrt(3) per unit a point moves in the object's frame (each partial derivative is a
    difference quotient of the grid, at most 1 for a distance field), so points farther than
    leak + reach at the selection pose stay out of the leak zone while sqrt(3) x the object's
    motion (from that pose to the rollout's start, then along the rollout) is within reach. A
    rollout that moved more is run again with every point. The result is exact wherever the
    grid is a distance field; only across a scan's hole, where the winding number's sign flips,
    can neighbouring samples differ by more (measured: identical at every physics evaluation of
    three paper-noise refinements)."""

    LIPSCHITZ = 3.0**0.5

    def __init__(self, model: HandContactModel, reach_m: float) -> None:
        self.model, self.reach = model, float(reach_m)
        self.leak_distance = model.parameters[5]
        self.pose: np.ndarray | None = None
        self.subset: HandContactModel | None = None
        self.last_motion_m = 0.0  # the last rollout's motion: a guess of the next one's

    def model_for(self, T: np.ndarray) -> HandContactModel | None:
        """The restricted model for a rollout from T, re-selected around T when T has moved
        half the reach away; None when the rollouts move too far for any subset to pay off."""
        if self.reach <= 0.0 or not np.isfinite(T).all() or self.LIPSCHITZ * self.last_motion_m > 0.5 * self.reach:
            return None
        if self.pose is None or not self._covers(T, self.last_motion_m, 0.5 * self.reach):
            keep = self.model.signed_distances(T) < self.leak_distance + self.reach
            self.pose, self.subset = T.copy(), self.model.restricted(keep)
        return self.subset

    def record(self, rollout: Rollout) -> None:
        """Note how far a rollout moved the object: the guess for the next one."""
        self.last_motion_m = self._motion(rollout.path_m, rollout.turn_rad)

    def exact(self, T: np.ndarray) -> bool:
        """Could no left-out point have reached the leak zone in the last recorded rollout, from T?"""
        return self.pose is not None and self._covers(T, self.last_motion_m, self.reach)

    def _covers(self, T: np.ndarray, rollout_motion_m: float, limit_m: float) -> bool:
        body = self.model.body
        com = lambda pose: pose[:3, :3] @ body.com + pose[:3, 3]  # noqa: E731
        angle = rotation_angle(self.pose[:3, :3], T[:3, :3])
        start = self._motion(float(np.linalg.norm(com(T) - com(self.pose))), angle)
        return self.LIPSCHITZ * (start + rollout_motion_m) <= limit_m

    def _motion(self, shift_m: float, turn_rad: float) -> float:
        """How far a hand point that can reach the leak zone moves in the object's frame: it lies
        within radius + leak + reach of the COM."""
        return shift_m + (self.model.body.radius + self.leak_distance + self.reach) * turn_rad
