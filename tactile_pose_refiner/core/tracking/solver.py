"""A second-order pose solver: Levenberg-Marquardt on stacked, robustly weighted residuals.

The pose is updated as T <- T C exp(delta) C^-1: a twist delta = (omega, v) in the object frame
about its centroid c (rotation about the centroid keeps the two blocks of the normal equations
well conditioned). Every residual is the object's signed distance at a point given in the
camera frame, so one analytic Jacobian serves depth, touch and penetration: for y = T^-1 x,
dy/d(omega, v) = [[y - c]x, -I] and dr/d delta = grad sdf(y)^T dy/d delta.

Written here rather than taken from a library (Theseus, PyPose): the problem is one 6-DoF
pose with three residual kinds, and a 6x6 solve per iteration in torch runs on CPU and CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.geometry import invert

if TYPE_CHECKING:  # numpy, scipy and torch only at run time: the GPU timing script needs no more
    from tactile_pose_refiner.core.scene.sdf import SdfGrid


class SdfField:
    """An SdfGrid on a torch device: values and their analytic gradient (trilinear)."""

    def __init__(self, grid: SdfGrid, device: str = "cpu", dtype: torch.dtype = torch.float64) -> None:
        self.device, self.dtype = device, dtype
        self.values = torch.as_tensor(grid.values, dtype=dtype, device=device).reshape(-1)
        self.shape = torch.tensor(grid.values.shape, device=device)
        self.strides = torch.tensor(
            [grid.values.shape[1] * grid.values.shape[2], grid.values.shape[2], 1], device=device
        )
        self.origin = torch.as_tensor(grid.origin, dtype=dtype, device=device)
        self.upper = torch.as_tensor(grid.upper, dtype=dtype, device=device)
        self.spacing = float(grid.spacing)
        corners = torch.tensor(list(np.ndindex(2, 2, 2)), device=device)
        self.corners = corners  # (8, 3) 0/1
        self.corner_offsets = (corners * self.strides).sum(dim=1)  # (8,)

    def __call__(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3) object-frame points -> signed distance (N,) and its gradient (N, 3); outside
        the grid the clamped value plus the distance to the grid box (as SdfGrid.sample)."""
        clamped = torch.minimum(torch.maximum(points, self.origin), self.upper)
        offset = points - clamped
        outside = offset.norm(dim=1)
        index = (clamped - self.origin) / self.spacing
        base = torch.minimum(index.floor().long(), self.shape - 2)
        frac = index - base
        flat = (base * self.strides).sum(dim=1)
        corner_values = self.values[flat[:, None] + self.corner_offsets]  # (N, 8)
        chosen = torch.where(self.corners.bool(), frac[:, None, :], 1.0 - frac[:, None, :])  # (N, 8, 3)
        value = (chosen.prod(dim=2) * corner_values).sum(dim=1)
        sign = self.corners.to(self.dtype) * 2.0 - 1.0  # d(chosen)/d(frac)
        gradient = (
            torch.stack(
                [
                    (sign[:, a] * chosen[:, :, (a + 1) % 3] * chosen[:, :, (a + 2) % 3] * corner_values).sum(dim=1)
                    for a in range(3)
                ],
                dim=1,
            )
            / self.spacing
        )
        inside_box = offset.abs() == 0
        gradient = torch.where(inside_box, gradient, torch.zeros_like(gradient))  # clamped axes: the box term
        gradient = gradient + offset / outside.clamp(min=1e-12)[:, None]
        return value + outside, gradient


@dataclass
class ResidualBlock:
    """Points in the camera frame whose object signed distance should equal `target` (m).
    side: per point, -1 where only a distance below target costs (a hand point entering the
    object), +1 where only one above it costs (a saturated taxel), 0 both; sigma: the
    residual's scale [m]; robust_k: Huber threshold in sigmas; outlier_m: points farther than
    this from their target get no weight (a mask that takes in background, a hand pixel)."""

    name: str
    points: torch.Tensor  # (N, 3)
    target: torch.Tensor  # (N,)
    sigma: float
    side: torch.Tensor | None = None  # (N,) -1, 0 or +1
    robust_k: float = 2.0
    outlier_m: float = float("inf")


@dataclass
class StackedBlocks:
    """Every block's points in one set of tensors, per-point settings beside them: one SDF pass
    and one host copy per iteration (on CUDA each block alone was a launch-bound pass)."""

    names: list[str]
    counts: list[int]
    points: torch.Tensor  # (N, 3)
    target: torch.Tensor
    side: torch.Tensor
    sigma: torch.Tensor
    robust_k: torch.Tensor
    outlier_m: torch.Tensor

    @property
    def count(self) -> int:
        return len(self.points)

    @classmethod
    def of(cls, blocks: list[ResidualBlock]) -> StackedBlocks:
        like = blocks[0].points

        def per_point(value, block: ResidualBlock) -> torch.Tensor:
            return torch.full((len(block.points),), float(value), dtype=like.dtype, device=like.device)

        return cls(
            [block.name for block in blocks],
            [len(block.points) for block in blocks],
            torch.cat([block.points.reshape(-1, 3) for block in blocks]),
            torch.cat([block.target for block in blocks]),
            torch.cat([per_point(0, block) if block.side is None else block.side for block in blocks]),
            torch.cat([per_point(block.sigma, block) for block in blocks]),
            torch.cat([per_point(block.robust_k, block) for block in blocks]),
            torch.cat([per_point(block.outlier_m, block) for block in blocks]),
        )


@dataclass
class SolveResult:
    T: np.ndarray
    iterations: int
    cost: float
    information: np.ndarray  # (6, 6) J^T W J + prior at the solution (twist about the centroid)
    bounded: bool  # the last step hit its bound
    block_stats: dict[str, dict] = field(default_factory=dict)


@dataclass
class SolverSettings:
    iterations: int = 8
    damping: float = 1e-3  # Levenberg-Marquardt lambda, relative to the diagonal
    max_step_mm: float = 10.0
    max_step_deg: float = 10.0
    stop_mm: float = 0.005  # converged once a step moves every point of the object less than this
    prior_mm: float = float("inf")  # motion prior's sigma on translation (deviation from the prediction)
    prior_deg: float = float("inf")

    @classmethod
    def from_config(cls, config: dict) -> SolverSettings:
        return cls(**{key: float(value) if key != "iterations" else int(value) for key, value in config.items()})


class PoseSolver:
    """Levenberg-Marquardt over ResidualBlocks for one object (its SDF and centroid)."""

    def __init__(self, field_: SdfField, centroid: np.ndarray, radius_m: float) -> None:
        self.field = field_
        self.centroid = np.array(centroid, dtype=np.float64)
        self.radius = float(radius_m)

    def residuals(self, T: np.ndarray, blocks: ResidualBlock | StackedBlocks) -> tuple[torch.Tensor, torch.Tensor]:
        """Whitened residuals (N,) and their Jacobian (N, 6) w.r.t. the twist at T."""
        stacked = blocks if isinstance(blocks, StackedBlocks) else StackedBlocks.of([blocks])
        T_inv = torch.as_tensor(invert(T), dtype=self.field.dtype, device=self.field.device)
        local = stacked.points @ T_inv[:3, :3].T + T_inv[:3, 3]
        value, gradient = self.field(local)
        residual = value - stacked.target
        arm = local - torch.as_tensor(self.centroid, dtype=local.dtype, device=local.device)
        jacobian = torch.cat([torch.linalg.cross(gradient, arm), -gradient], dim=1)  # d sdf(y + arm x w - v)
        active = (stacked.side == 0) | (stacked.side * residual > 0)
        residual = torch.where(active, residual, torch.zeros_like(residual))
        jacobian = torch.where(active[:, None], jacobian, torch.zeros_like(jacobian))
        return residual / stacked.sigma, jacobian / stacked.sigma[:, None]

    @staticmethod
    def weights(residual: torch.Tensor, stacked: StackedBlocks) -> torch.Tensor:
        """IRLS weights: Huber beyond robust_k sigmas, none beyond outlier_m."""
        size = residual.abs()
        weight = torch.where(size <= stacked.robust_k, torch.ones_like(size), stacked.robust_k / size.clamp(min=1e-12))
        return torch.where(size * stacked.sigma > stacked.outlier_m, torch.zeros_like(weight), weight)

    def solve(
        self,
        T_start: np.ndarray,
        blocks: list[ResidualBlock],
        settings: SolverSettings,
        T_prior: np.ndarray | None = None,
        fixed_axis: np.ndarray | None = None,
    ) -> SolveResult:
        """fixed_axis: an object-frame unit axis the pose does not turn about (a can's, whose
        turn the residuals cannot see: core/tracking/texture.py sets it)."""
        T = np.array(T_start, dtype=np.float64)
        stacked = StackedBlocks.of(blocks)
        prior = self._prior_information(settings)
        basis = np.eye(6) if fixed_axis is None else _complement(np.r_[fixed_axis, np.zeros(3)])
        bounded, iterations = False, 0
        while iterations < settings.iterations:
            iterations += 1
            H, g, _ = self._system(T, self._evaluate(T, stacked), prior, T_prior)
            H, g = basis.T @ H @ basis, basis.T @ g  # the step within the free directions
            step = -basis @ np.linalg.solve(H + settings.damping * np.diag(np.diag(H) + 1e-9), g)
            step, bounded = self._bounded(step, settings)
            T = self.moved(T, step)
            if self._motion_mm(step) < settings.stop_mm:
                break
        evaluated = self._evaluate(T, stacked)  # the solution's residuals: its information and its stats
        H, _, cost = self._system(T, evaluated, prior, T_prior)
        return SolveResult(T, iterations, cost, H, bounded, self.block_stats(stacked, evaluated))

    def _system(self, T, evaluated, prior, T_prior) -> tuple[np.ndarray, np.ndarray, float]:
        """The normal matrix, gradient and cost at T (its residuals `evaluated`), the prior on the
        deviation from T_prior in."""
        H, g, cost = self._normal_equations(evaluated)
        error = self.twist_between(T_prior, T) if T_prior is not None else np.zeros(6)
        return H + prior, g + prior @ error, cost + float(error @ prior @ error)

    def _evaluate(self, T: np.ndarray, stacked: StackedBlocks):
        """Whitened residuals, Jacobian and IRLS weights at T (None without points)."""
        if stacked.count == 0:
            return None
        residual, jacobian = self.residuals(T, stacked)
        return residual, jacobian, self.weights(residual, stacked)

    @staticmethod
    def _normal_equations(evaluated) -> tuple[np.ndarray, np.ndarray, float]:
        """J^T W J, J^T W r and r^T W r in one pass over every block, one copy to the host."""
        if evaluated is None:
            return np.zeros((6, 6)), np.zeros(6), 0.0
        residual, jacobian, weight = evaluated
        weighted = jacobian * weight[:, None]
        system = torch.cat([weighted.T @ jacobian, (weighted.T @ residual)[:, None]], dim=1)
        cost = (weight * residual**2).sum()
        host = torch.cat([system.reshape(-1), cost.reshape(1)]).cpu().numpy().astype(np.float64)
        return host[:42].reshape(6, 7)[:, :6], host[:42].reshape(6, 7)[:, 6], float(host[42])

    @staticmethod
    def block_stats(stacked: StackedBlocks, evaluated) -> dict[str, dict]:
        """Per block: points, inliers (weight > 0), the inliers' rms distance from target [mm],
        and a truncated squared cost (whitened, an outlier costs its bound: unlike the robust
        cost it rises when points leave the surface, so it ranks poses)."""
        if evaluated is None:
            return {name: {"points": 0, "inliers": 0, "rms_mm": 0.0, "score": 0.0} for name in stacked.names}
        residual, _, weight = evaluated
        inlier = (weight > 0).cpu().numpy()
        distance = (residual * stacked.sigma).cpu().numpy()
        truncated = torch.minimum(residual.square(), (stacked.outlier_m / stacked.sigma).square()).cpu().numpy()
        stats, start = {}, 0
        for name, count in zip(stacked.names, stacked.counts):
            block = slice(start, start + count)
            kept = distance[block][inlier[block]]
            rms = float(np.sqrt(np.mean(kept**2))) * 1000 if len(kept) else 0.0
            stats[name] = {"points": count, "inliers": len(kept), "rms_mm": rms, "score": float(truncated[block].sum())}
            start += count
        return stats

    def _prior_information(self, settings: SolverSettings) -> np.ndarray:
        rotation = (self.radius * np.radians(settings.prior_deg)) if np.isfinite(settings.prior_deg) else np.inf
        translation = settings.prior_mm / 1000 if np.isfinite(settings.prior_mm) else np.inf
        # rotation measured as the arc it moves the object's rim (radius x angle), like the refiner's metric
        diagonal = [self.radius**2 / rotation**2] * 3 + [1.0 / translation**2] * 3
        return np.diag(diagonal)

    def _bounded(self, step: np.ndarray, settings: SolverSettings) -> tuple[np.ndarray, bool]:
        angle, shift = np.linalg.norm(step[:3]), np.linalg.norm(step[3:])
        scale = min(
            1.0, np.radians(settings.max_step_deg) / max(angle, 1e-12), settings.max_step_mm / 1000 / max(shift, 1e-12)
        )
        return step * scale, scale < 1.0

    def _motion_mm(self, step: np.ndarray) -> float:
        return 1000 * (np.linalg.norm(step[3:]) + self.radius * np.linalg.norm(step[:3]))

    def moved(self, T: np.ndarray, twist: np.ndarray) -> np.ndarray:
        """T C exp(twist) C^-1 (rotation about the centroid, object frame)."""
        motion = np.eye(4)
        motion[:3, :3] = Rotation.from_rotvec(twist[:3]).as_matrix()
        motion[:3, 3] = twist[3:] + self.centroid - motion[:3, :3] @ self.centroid
        return T @ motion

    def twist_between(self, T_from: np.ndarray, T_to: np.ndarray) -> np.ndarray:
        """The twist (about the centroid) that moves T_from to T_to (to first order beyond)."""
        relative = invert(T_from) @ T_to
        omega = Rotation.from_matrix(relative[:3, :3]).as_rotvec()
        v = relative[:3, 3] - self.centroid + relative[:3, :3] @ self.centroid
        return np.concatenate([omega, v])

    def covariance_ros(self, T: np.ndarray, information: np.ndarray) -> np.ndarray:
        """The pose covariance (6, 6) in the ROS convention: (x, y, z, rot x, rot y, rot z) of the
        pose in its header frame (the camera's), from the twist's information matrix."""
        covariance = np.linalg.pinv(information)
        R = T[:3, :3]
        c = self.centroid
        skew = np.cross(np.eye(3), c)  # [c]x
        # origin moves by R([c]x w + v); orientation by R w
        G = np.zeros((6, 6))
        G[:3, :3], G[:3, 3:] = R @ skew, R
        G[3:, :3] = R
        return G @ covariance @ G.T


def _complement(direction: np.ndarray) -> np.ndarray:
    """(n, n-1) orthonormal basis of the directions orthogonal to `direction` (n,)."""
    u, _, _ = np.linalg.svd(direction[:, None] / np.linalg.norm(direction))
    return u[:, 1:]
