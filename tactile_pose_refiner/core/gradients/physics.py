"""Differentiable physics gradient, L_phys = L_DP + lambda |dt|^2 (paper Eq. 1), after Grasp'D.

The hand is fixed (link poses from the joint states); its collision surface is sampled into
points. The object, starting at rest at the candidate pose, is simulated for a few steps
against those points: penalty normal force proportional to penetration into the object's
baked SDF (Hunt-Crossley damping), regularised Coulomb friction, semi-implicit Euler.
L_DP measures how far the contacts push the object (COM displacement and rotation after the
rollout) plus the penetration energy along it. The contact kernel is our own Warp code:
warp.sim is gone and Newton's contact gradients are approximate (team notes); the rigid-body
integration of 6 numbers per step stays in torch, so autograd chains the steps.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import warp as wp
import trimesh

from tactile_pose_refiner.core.gradients.base import (GradientSource, SourceLoss, degraded,
                                                      pose_array, so3_exp)
from tactile_pose_refiner.core.geometry import invert, rotation_angle, transform_points
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.sdf import SdfGrid

wp.config.quiet = True


# --- Warp: SDF sampling and the contact wrench ------------------------------------------------
@wp.func
def grid_cell(shape: wp.vec3i, origin: wp.vec3, spacing: float, p: wp.vec3):
    """Cell of p in a grid: lower corner (i, j, k), fractions in it, and how far p lies outside
    the grid box (p is clamped onto the box)."""
    upper = origin + spacing * wp.vec3(float(shape[0] - 1), float(shape[1] - 1), float(shape[2] - 1))
    q = wp.vec3(wp.clamp(p[0], origin[0], upper[0]), wp.clamp(p[1], origin[1], upper[1]),
                wp.clamp(p[2], origin[2], upper[2]))
    u = (q - origin) / spacing
    i = wp.min(int(wp.floor(u[0])), shape[0] - 2)
    j = wp.min(int(wp.floor(u[1])), shape[1] - 2)
    k = wp.min(int(wp.floor(u[2])), shape[2] - 2)
    return wp.vec3i(i, j, k), u - wp.vec3(float(i), float(j), float(k)), wp.length(p - q)


@wp.func
def trilinear(values: wp.array3d(dtype=Any), c: wp.vec3i, f: wp.vec3):
    """Trilinear interpolation in cell c at fractions f (generic: distances and gradients)."""
    a = wp.lerp(values[c[0], c[1], c[2]], values[c[0] + 1, c[1], c[2]], f[0])
    b = wp.lerp(values[c[0], c[1] + 1, c[2]], values[c[0] + 1, c[1] + 1, c[2]], f[0])
    d = wp.lerp(values[c[0], c[1], c[2] + 1], values[c[0] + 1, c[1], c[2] + 1], f[0])
    e = wp.lerp(values[c[0], c[1] + 1, c[2] + 1], values[c[0] + 1, c[1] + 1, c[2] + 1], f[0])
    return wp.lerp(wp.lerp(a, b, f[1]), wp.lerp(d, e, f[1]), f[2])


@wp.func
def leaky_penetration(signed_distance: float, leak: float, leak_distance: float):
    """max(0, -phi): penetration depth. Its backward pass leaks a share of the gradient to points
    just outside (within leak_distance, fading with distance), so contacts about to happen still
    pull (Grasp'D's leaky gradient); far points leak nothing, or hundreds of them would outvote
    the few real contacts."""
    return wp.max(-signed_distance, 0.0)


@wp.func_grad(leaky_penetration)
def adj_leaky_penetration(signed_distance: float, leak: float, leak_distance: float, adj_ret: float):
    if signed_distance < 0.0:
        wp.adjoint[signed_distance] += -adj_ret
    elif signed_distance < leak_distance:
        wp.adjoint[signed_distance] += -leak * (1.0 - signed_distance / leak_distance) * adj_ret


@wp.kernel
def contact_wrench(hand_points: wp.array(dtype=wp.vec3), sdf: wp.array3d(dtype=float),
                   sdf_gradient: wp.array3d(dtype=wp.vec3), sdf_shape: wp.vec3i, sdf_origin: wp.vec3,
                   sdf_spacing: float, com_local: wp.vec3,
                   state: wp.array(dtype=float),
                   stiffness: float, damping: float, mu: float, friction_eps: float, leak: float,
                   leak_distance: float, skin: float,
                   wrench: wp.array(dtype=float)):
    """Net force and torque (about the COM) that the fixed hand points exert on the object,
    and the sum of squared penetrations. Camera frame; object pose given by R and its COM."""
    tid = wp.tid()
    R = wp.mat33(state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7],
                 state[8])
    x = wp.vec3(state[9], state[10], state[11])
    velocity = wp.vec3(state[12], state[13], state[14])
    angular_velocity = wp.vec3(state[15], state[16], state[17])
    h = hand_points[tid]
    arm = h - x
    # The normal interpolates a baked gradient grid: continuous across cells, unlike the
    # gradient of the trilinear distance, so forces (and the loss) have no jumps at cell faces.
    # (Unpack returned tuples: indexing one drops its adjoint in warp 1.19.)
    cell, fraction, outside = grid_cell(sdf_shape, sdf_origin, sdf_spacing,
                                        wp.transpose(R) * arm + com_local)
    # the soft skin takes up the first `skin` metres of penetration without pushing back
    signed_distance = trilinear(sdf, cell, fraction) + outside + skin
    if signed_distance >= leak_distance:
        return   # no force and no leaked gradient: most of the band's points, skipped cheaply
    depth = leaky_penetration(signed_distance, leak, leak_distance)
    normal = R * wp.normalize(trilinear(sdf_gradient, cell, fraction))  # outward normal
    contact_velocity = velocity + wp.cross(angular_velocity, arm)
    rate = wp.dot(contact_velocity, normal)                    # d(depth)/dt
    magnitude = stiffness * depth * wp.max(1.0 + damping * rate, 0.0)
    tangential = contact_velocity - rate * normal
    friction = -mu * magnitude * tangential / wp.sqrt(wp.dot(tangential, tangential)
                                                      + friction_eps * friction_eps)
    f = -magnitude * normal + friction
    moment = wp.cross(arm, f)
    for axis in range(3):
        wp.atomic_add(wrench, axis, f[axis])
        wp.atomic_add(wrench, 3 + axis, moment[axis])
    wp.atomic_add(wrench, 6, depth * depth)


# --- torch bridge ----------------------------------------------------------------------------
class StepBuffers:
    """Warp arrays of one rollout step, reused across calls (allocation dominated the cost).
    state = R (9, row-major), COM (3), v (3), w (3); wrench = force (3), torque (3), sum d^2."""

    def __init__(self, device: str) -> None:
        self.state = wp.zeros(18, dtype=float, device=device, requires_grad=True)
        self.wrench = wp.zeros(7, dtype=float, device=device, requires_grad=True)
        self.tape: wp.Tape | None = None


class ContactWrench(torch.autograd.Function):
    """Step k: (R (3,3), COM (3,), v (3,), w (3,)) -> force (3,), torque (3,), sum of squared
    penetrations (); backward through the Warp kernel's adjoint."""

    @staticmethod
    def forward(ctx, model: "HandContactModel", step: int, rotation, com, velocity, angular_velocity):
        buffers = model.buffers(step)
        state = torch.cat([rotation.reshape(9), com, velocity, angular_velocity])
        buffers.state.assign(state.detach().to("cpu", torch.float32).numpy())
        buffers.wrench.zero_()
        if any(ctx.needs_input_grad):   # a forward-only evaluation (a candidate step) needs no tape
            buffers.tape = wp.Tape()
            with buffers.tape:
                model.launch(buffers.state, buffers.wrench)
        else:
            buffers.tape = None
            model.launch(buffers.state, buffers.wrench)
        ctx.buffers, ctx.like = buffers, rotation
        wrench = torch.as_tensor(buffers.wrench.numpy(), dtype=rotation.dtype, device=rotation.device)
        return wrench[:3], wrench[3:6], wrench[6]

    @staticmethod
    def backward(ctx, grad_force, grad_torque, grad_energy):
        buffers, like = ctx.buffers, ctx.like
        grad = torch.cat([grad_force, grad_torque, grad_energy.reshape(1)])
        buffers.state.grad.zero_()
        buffers.tape.backward(grads={buffers.wrench: wp.array(
            grad.detach().to("cpu", torch.float32).numpy(), dtype=float, device=buffers.wrench.device)})
        state_grad = torch.as_tensor(buffers.state.grad.numpy(), dtype=like.dtype, device=like.device)
        buffers.tape = None
        return (None, None, state_grad[:9].reshape(3, 3), state_grad[9:12], state_grad[12:15],
                state_grad[15:18])


# --- the model: object SDF + fixed hand points ------------------------------------------------
@dataclass(frozen=True)
class RigidBody:
    """Mass properties in the object frame: mass [kg], COM (3,) [m], inertia about the COM
    (3, 3) [kg m^2], radius [m] (COM to farthest vertex, turns rotation into a length)."""

    mass: float
    com: np.ndarray
    inertia: np.ndarray
    radius: float

    @classmethod
    def from_mesh(cls, mesh: trimesh.Trimesh, mass: float) -> "RigidBody":
        """From the convex hull (always closed, unlike many scans), scaled to `mass`."""
        hull = mesh.convex_hull
        inertia = np.asarray(hull.moment_inertia) * (mass / hull.mass)
        com = np.asarray(hull.center_mass)
        radius = float(np.linalg.norm(mesh.vertices - com, axis=1).max())
        return cls(float(mass), com, inertia, radius)


class HandContactModel:
    """Object SDF and rigid body + the fixed hand's surface points (camera frame)."""

    def __init__(self, sdf: SdfGrid, body: RigidBody, hand_points: np.ndarray,
                 config: dict, device: str = "cpu") -> None:
        wp.init()
        self.body, self.config, self.device = body, config, device
        contact = config["contact"]
        self.parameters = [float(contact["stiffness_n_per_m"]), float(contact["damping_s"]),
                           float(contact["friction_mu"]), float(contact["friction_eps_m_s"]),
                           float(contact["leak"]), float(contact["leak_distance_m"]),
                           float(contact.get("skin_compliance_m", 0.0))]
        self.sdf_grid = sdf
        self.sdf = wp.array(sdf.values, dtype=float, device=device)
        self.sdf_gradient = wp.array(sdf.gradient(), dtype=wp.vec3, device=device)
        self.sdf_shape = wp.vec3i(*sdf.values.shape)
        self.sdf_origin = wp.vec3(*sdf.origin.astype(np.float32))
        self.sdf_spacing = float(sdf.spacing)
        self.points = wp.array(np.asarray(hand_points, dtype=np.float32).reshape(-1, 3),
                               dtype=wp.vec3, device=device)
        self.com_local = wp.vec3(*body.com.astype(np.float32))
        self._buffers: list[StepBuffers] = []

    @property
    def point_count(self) -> int:
        return self.points.shape[0]

    def restricted(self, keep: np.ndarray) -> "HandContactModel":
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
        wp.launch(contact_wrench, dim=self.point_count, device=self.device,
                  inputs=[self.points, self.sdf, self.sdf_gradient, self.sdf_shape, self.sdf_origin,
                          self.sdf_spacing, self.com_local, state, *self.parameters],
                  outputs=[wrench])

    def rollout(self, rotation: torch.Tensor, translation: torch.Tensor, steps: int, dt: float,
                gravity) -> "Rollout":
        """Semi-implicit Euler from rest at (R, t); differentiable w.r.t. (R, t)."""
        body = self.body
        com_local = torch.as_tensor(body.com, dtype=rotation.dtype, device=rotation.device)
        inertia = torch.as_tensor(body.inertia, dtype=rotation.dtype, device=rotation.device)
        gravity = torch.as_tensor(np.asarray(gravity, float), dtype=rotation.dtype,
                                  device=rotation.device)
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
        return Rollout(rotation, rotation @ com_local + translation, R, x,
                       torch.stack(penetration) if penetration else torch.zeros(0), path_m, turn_rad)


@dataclass
class Rollout:
    rotation_start: torch.Tensor
    com_start: torch.Tensor
    rotation_end: torch.Tensor
    com_end: torch.Tensor
    penetration_sq: torch.Tensor    # (steps,) sum over hand points of squared penetration [m^2]
    path_m: float = 0.0             # length of the COM's path [m] ...
    turn_rad: float = 0.0           # ... and the angle turned along the way (sums of the steps)

    def displacement(self) -> torch.Tensor:
        return torch.linalg.norm(self.com_end - self.com_start)

    def rotation_sine(self) -> torch.Tensor:
        """|sin(angle)| of the relative rotation: smooth at zero, unlike arccos of the trace."""
        relative = self.rotation_end @ self.rotation_start.T
        skew = 0.5 * (relative - relative.T)
        return torch.sqrt((skew**2).sum() / 2.0 + 1e-24)


def contact_model(sdf: SdfGrid, body: RigidBody, hand_points: np.ndarray, T: np.ndarray,
                  config: dict, device: str = "cpu") -> HandContactModel:
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

    LIPSCHITZ = 3.0 ** 0.5

    def __init__(self, model: HandContactModel, reach_m: float) -> None:
        self.model, self.reach = model, float(reach_m)
        self.leak_distance = model.parameters[5]
        self.pose: np.ndarray | None = None
        self.subset: HandContactModel | None = None
        self.last_motion_m = 0.0     # the last rollout's motion: a guess of the next one's

    def model_for(self, T: np.ndarray) -> HandContactModel | None:
        """The restricted model for a rollout from T, re-selected around T when T has moved
        half the reach away; None when the rollouts move too far for any subset to pay off."""
        if (self.reach <= 0.0 or not np.isfinite(T).all()
                or self.LIPSCHITZ * self.last_motion_m > 0.5 * self.reach):
            return None
        if self.pose is None or not self._covers(T, self.last_motion_m, 0.5 * self.reach):
            keep = self.model.signed_distances(T) < self.leak_distance + self.reach
            self.pose, self.subset = T.copy(), self.model.restricted(keep)
        return self.subset

    def record(self, rollout: "Rollout") -> None:
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


# --- the gradient source ---------------------------------------------------------------------
class PhysicsSource(GradientSource):
    """L_phys = L_DP + lambda |t - t_initial|^2 (Eq. 1), millimetre units."""

    name = "physics"

    def __init__(self, model: HandContactModel, initial_translation: np.ndarray,
                 config: dict | None = None) -> None:
        self.model = model
        self.config = config or model.config
        self.initial_translation = np.asarray(initial_translation, dtype=np.float64)
        self.reachable = ReachableSubset(model, float(self.config["rollout"].get("reach_m", 0.0)))

    @classmethod
    def build(cls, sdf: SdfGrid, body: RigidBody, hand_points: np.ndarray, T_initial: np.ndarray,
              config: dict | None = None, device: str = "cpu") -> "PhysicsSource":
        """Hand points (N, 3) in the camera frame around the initial pose T_initial (4, 4)."""
        config = config or load_config("physics")
        return cls(contact_model(sdf, body, hand_points, T_initial, config, device),
                   T_initial[:3, 3], config)

    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> SourceLoss:
        if self.model.point_count == 0:
            return degraded("no hand surface points", rotation, translation)
        weights = self.config["loss"]
        rollout = self._rollout(rotation, translation)
        mm = 1000.0
        radius_mm = self.model.body.radius * mm
        l_dp = (weights["displacement_weight"] * (rollout.displacement() * mm) ** 2
                + weights["rotation_weight"] * (rollout.rotation_sine() * radius_mm) ** 2
                + weights["penetration_weight"] * rollout.penetration_sq.mean() * mm**2)
        shift = translation - torch.as_tensor(self.initial_translation, dtype=translation.dtype,
                                              device=translation.device)
        value = l_dp + weights["lambda_translation"] * ((shift * mm) ** 2).sum()
        if not torch.isfinite(value):
            return degraded("non-finite physics loss", rotation, translation)
        return SourceLoss(value)

    def _rollout(self, rotation: torch.Tensor, translation: torch.Tensor) -> Rollout:
        """The rollout from (R, t) with the hand points it can reach, else with all of them."""
        settings = self.config["rollout"]
        run = lambda model: model.rollout(rotation, translation, int(settings["steps"]),  # noqa: E731
                                          float(settings["dt_s"]), settings["gravity_m_s2"])
        T = pose_array(rotation, translation)
        subset = self.reachable.model_for(T)
        if subset is not None:
            rollout = run(subset)
            self.reachable.record(rollout)
            if self.reachable.exact(T):
                return rollout
        rollout = run(self.model)
        self.reachable.record(rollout)
        return rollout
