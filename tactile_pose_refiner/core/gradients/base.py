"""The one interface every gradient source implements, and the pose parametrisation.

A source is built once per frame from that frame's inputs (depth points, taxels, image, hand
pose...) and then evaluated many times at candidate poses. Poses enter as a rotation matrix R
(3, 3) and translation t (3,) of the object in the camera frame [m], torch tensors that carry
autograd; the refiner steps in the tangent space (see `perturbed_pose`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

OK = "ok"


@dataclass
class SourceLoss:
    """value: scalar tensor, differentiable w.r.t. the pose. weight: 0 when the source's input is
    unusable (then value is an exact, graph-connected zero, so gradients are zero, never NaN).
    status: "ok" or "degraded: <why>"."""

    value: torch.Tensor
    weight: float = 1.0
    status: str = OK

    @property
    def ok(self) -> bool:
        return self.weight > 0.0


def degraded(reason: str, rotation: torch.Tensor, translation: torch.Tensor) -> SourceLoss:
    """A labelled zero-weight result whose gradient w.r.t. the pose is exactly zero."""
    # nan_to_num: a NaN pose must still give an exact zero (0 * NaN is NaN), with zero gradient
    zero = 0.0 * (torch.nan_to_num(rotation, 0.0, 0.0, 0.0).sum() + torch.nan_to_num(translation, 0.0, 0.0, 0.0).sum())
    return SourceLoss(zero, 0.0, f"degraded: {reason}")


class GradientSource(ABC):
    """One of the four gradient sources (physics, render, depth, tactile)."""

    name: str = "source"

    @abstractmethod
    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> SourceLoss:
        """(3, 3) rotation, (3,) translation of T_cam_obj (same dtype/device) -> SourceLoss."""

    def frozen(self) -> AbstractContextManager:
        """Within this context the source keeps the per-pose state it chose at the last pose
        (e.g. the visible triangles), so losses at nearby poses are comparable."""
        return nullcontext()


def hat(omega: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros((), dtype=omega.dtype, device=omega.device)
    return torch.stack(
        [
            torch.stack([zero, -omega[2], omega[1]]),
            torch.stack([omega[2], zero, -omega[0]]),
            torch.stack([-omega[1], omega[0], zero]),
        ]
    )


def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, (3,) rotation vector -> (3, 3); smooth (Taylor) near zero."""
    theta_sq = (omega * omega).sum()
    small = theta_sq < 1e-10
    theta_sq_safe = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = torch.sqrt(theta_sq_safe)
    a = torch.where(small, 1.0 - theta_sq / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta_sq / 24.0, (1.0 - torch.cos(theta)) / theta_sq_safe)
    K = hat(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a * K + b * (K @ K)


def perturbed_pose(
    T: np.ndarray, delta: torch.Tensor, pivot: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose T (4, 4) moved by delta = (dt (3,) [m], omega (3,) [rad]): R = exp(omega) R0 and the
    object turns about `pivot` (3,), a point in the object frame (default: its origin), along
    camera axes, then shifts by dt. Returns (R, t) tensors.

    Turn about the centroid when optimising: about a far-off mesh origin every rotation also
    moves the object, and rotation and translation steps fight (render fit on the mustard
    bottle: 2.6 mm / 3.5 deg about the origin vs 0.09 mm / 0.15 deg about the centroid)."""
    R0 = torch.as_tensor(np.asarray(T)[:3, :3], dtype=delta.dtype, device=delta.device)
    t0 = torch.as_tensor(np.asarray(T)[:3, 3], dtype=delta.dtype, device=delta.device)
    turn = so3_exp(delta[3:])
    if pivot is None:
        return turn @ R0, t0 + delta[:3]
    centre = R0 @ torch.as_tensor(np.array(pivot, dtype=np.float64), dtype=delta.dtype, device=delta.device) + t0
    return turn @ R0, turn @ (t0 - centre) + centre + delta[:3]


def pose_array(rotation: torch.Tensor, translation: torch.Tensor) -> np.ndarray:
    """(3, 3), (3,) tensors -> (4, 4) float64 numpy pose (no gradient)."""
    T = np.eye(4)
    T[:3, :3] = rotation.detach().cpu().numpy()
    T[:3, 3] = translation.detach().cpu().numpy()
    return T


def apply_delta(T: np.ndarray, delta: np.ndarray, pivot: np.ndarray | None = None) -> np.ndarray:
    """numpy twin of perturbed_pose: the (4, 4) pose after a step delta (6,)."""
    return pose_array(*perturbed_pose(T, torch.as_tensor(np.asarray(delta, dtype=np.float64)), pivot))


def random_offset(T: np.ndarray, translation_m: float, angle_rad: float, seed: int) -> np.ndarray:
    """T moved by translation_m along and angle_rad about random directions (tangent step)."""
    rng = np.random.default_rng(seed)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    return apply_delta(T, np.r_[translation_m * unit(rng.normal(size=3)), angle_rad * unit(rng.normal(size=3))])


def loss_at(source: GradientSource, T: np.ndarray) -> SourceLoss:
    """The source's loss at pose T (4, 4), forward only (no graph, no gradient)."""
    with torch.no_grad():
        return source.loss(
            torch.as_tensor(T[:3, :3], dtype=torch.float64), torch.as_tensor(T[:3, 3], dtype=torch.float64)
        )


def loss_value(source: GradientSource, T: np.ndarray) -> float:
    """The source's loss at T as a float, inf where it is unusable: a score to keep the minimum of."""
    result = loss_at(source, T)
    return float(result.value) if result.ok else float("inf")


def loss_and_gradient(
    source: GradientSource, T: np.ndarray, pivot: np.ndarray | None = None
) -> tuple[SourceLoss, np.ndarray]:
    """Evaluate a source at T and its gradient (6,) w.r.t. the step (dt, omega) at zero (turning
    about `pivot`, see perturbed_pose). A non-finite loss or gradient becomes a labelled
    zero-weight result, never a NaN step."""
    delta = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    rotation, translation = perturbed_pose(T, delta, pivot)
    result = source.loss(rotation, translation)
    (gradient,) = torch.autograd.grad(result.value, delta, allow_unused=True)
    gradient = np.zeros(6) if gradient is None else gradient.detach().numpy()
    if not (np.isfinite(gradient).all() and torch.isfinite(result.value)):
        return degraded(
            f"non-finite {source.name} loss or gradient", rotation.detach(), translation.detach()
        ), np.zeros(6)
    return result, gradient


class Unavailable(GradientSource):
    """A source whose inputs could not be used this frame (e.g. NaN joint states): always a
    labelled zero-weight result."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason

    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> SourceLoss:
        return degraded(self.reason, rotation, translation)
