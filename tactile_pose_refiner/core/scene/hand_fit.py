"""The hand corrected from what the camera sees of it: joint encoders are off by degrees and the
hand-camera calibration by millimetres, and physics and touch would trust both.

The posed hand model is aligned to its own depth pixels (those within `search_px` of its
predicted silhouette, off the object's mask): point-to-plane residuals from each observed point
to the nearest camera-facing model surface point, Huber-robust, against Gaussian priors on the
joint offsets and on the base pose's correction (about the hand base, as the calibration error
is). A point nearer the camera than its model point by `occluder_margin_m` belongs to something
in front of the hand (the object past its mask's edge) and is left out. The associations are
refreshed `rounds` times; each round is an L-BFGS solve over 16 joint offsets + 6 base
parameters in units of their priors' sigmas (differentiable forward kinematics in torch). A fit that
does not lower the robust residual by min_improvement_m, or that sees too little of the hand,
leaves the encoders' hand (labelled in `status`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import trimesh
from scipy.ndimage import binary_dilation
from scipy.optimize import minimize
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.hand import HandModel


@dataclass
class HandCorrection:
    """q (J,) corrected joints [rad, URDF order]; T_cam_base (4, 4) corrected base pose; what the
    correction did (shift [mm], turn [deg], joint change rms [deg]) and the robust point-to-plane
    rms before/after [mm] over `points` hand depth points."""

    q: np.ndarray
    T_cam_base: np.ndarray
    status: str = "ok"
    points: int = 0
    rms_before_mm: float = float("nan")
    rms_after_mm: float = float("nan")
    base_shift_mm: float = 0.0
    base_turn_deg: float = 0.0
    joint_change_rms_deg: float = 0.0
    unseen: bool = False  # too little of the hand in view to fit (camera off, hand hidden)
    recalled_s: float | None = None  # a fit of a frame this much earlier, taken over (HandAssets)
    on_object: bool = False  # fitted with the touching taxels on the refined object as well

    def summary(self) -> str:
        if self.status != "ok":
            return self.status
        fitted = "fitted on its depth pixels and contacts" if self.on_object else "fitted"
        if self.recalled_s is not None:
            return (
                f"hand corrected as {fitted} {self.recalled_s:.1f} s before (none of it in view now): "
                f"base {self.base_shift_mm:.1f} mm {self.base_turn_deg:.2f} deg, "
                f"joints rms {self.joint_change_rms_deg:.2f} deg"
            )
        return (
            f"hand corrected on {self.points} depth points{' and its contacts' * self.on_object}: "
            f"base {self.base_shift_mm:.1f} mm "
            f"{self.base_turn_deg:.2f} deg, joints rms {self.joint_change_rms_deg:.2f} deg, "
            f"fit {self.rms_before_mm:.1f} -> {self.rms_after_mm:.1f} mm"
        )


@dataclass
class ObjectContacts:
    """The skin's contacts with an object the camera placed: the touching taxels' links and
    link-frame positions (K, 3) [m], the gaps (K,) [m] their forces imply (TactileModel.implied_gaps;
    0 on a bare skin), the object's mesh (object frame) and its pose T_cam_obj, the sigma [m] and
    Huber width [m] the gaps are held to, and the fit's rounds. A finger hidden behind the
    object shows no depth pixels, but its taxels must lie on the object's surface."""

    links: list[str]
    positions: np.ndarray
    gaps: np.ndarray
    mesh: trimesh.Trimesh
    T_cam_obj: np.ndarray
    std_m: float
    huber_m: float
    rounds: int

    def targets(self, taxels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Each taxel's (K, 3, camera frame) nearest surface point and that face's outward normal,
        camera frame; queried in the object's frame, where its mesh keeps its search tree."""
        R, t = self.T_cam_obj[:3, :3], self.T_cam_obj[:3, 3]
        nearest, _, faces = trimesh.proximity.closest_point(self.mesh, (taxels - t) @ R)
        return torch.as_tensor(nearest @ R.T + t), torch.as_tensor(self.mesh.face_normals[faces] @ R.T)

    def cost(self, taxels: torch.Tensor, nearest: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
        """Sum of (Huber) squared misfits, in sigmas, of the taxels' signed distances to the
        surface (linearised at the nearest points) against their implied gaps."""
        misfit = ((taxels - nearest) * normals).sum(dim=1) - torch.as_tensor(self.gaps)
        return _huber(misfit, self.huber_m).sum() / self.std_m**2


def rotation_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """(3,) rotation vector -> (3, 3), differentiable (Rodrigues; well defined at 0)."""
    angle2 = (rotvec * rotvec).sum()
    K = torch.zeros(3, 3, dtype=rotvec.dtype)
    K[0, 1], K[0, 2], K[1, 0] = -rotvec[2], rotvec[1], rotvec[2]
    K[1, 2], K[2, 0], K[2, 1] = -rotvec[0], -rotvec[1], rotvec[0]
    angle = torch.sqrt(angle2 + 1e-24)
    a = torch.where(angle2 > 1e-12, torch.sin(angle) / angle, 1.0 - angle2 / 6.0)
    b = torch.where(angle2 > 1e-12, (1.0 - torch.cos(angle)) / (angle2 + 1e-24), 0.5 - angle2 / 24.0)
    return torch.eye(3, dtype=rotvec.dtype) + a * K + b * (K @ K)


class HandFitter:
    """Built once per hand model (config/hand.yaml `correction`); `fit` per frame."""

    def __init__(self, model: HandModel, config: dict) -> None:
        self.model = model
        self.config = config
        samples = model.surface_points(float(config["model_spacing_m"]))
        self.samples = {link: (torch.as_tensor(p), torch.as_tensor(n)) for link, (p, n) in samples.items()}

    def fit(
        self,
        depth_m: np.ndarray,
        camera: PinholeCamera,
        object_mask: np.ndarray | None,
        q: np.ndarray,
        T_cam_base: np.ndarray,
        sensed_mesh: trimesh.Trimesh,
        contacts: ObjectContacts | None = None,
        start: HandCorrection | None = None,
        prior: HandCorrection | None = None,
    ) -> HandCorrection:
        """depth_m (H, W) [m] 0 = missing; object_mask (H, W) or None; q (J,) the encoders' joints
        [rad]; T_cam_base (4, 4) the calibration's base pose; sensed_mesh: the hand posed by both
        (camera frame), whose silhouette says where to look for its depth pixels; contacts: the
        taxels to hold on an object's surface as well (where a refinement placed it), for
        `contacts.rounds` rounds from `start` (a fit of this frame) rather than the fit's own;
        prior: a correction the joint offsets and base correction are expected near (their
        priors' mean; default: the encoders' and the calibration's)."""
        kept = HandCorrection(np.asarray(q, float), np.asarray(T_cam_base, float))
        observed = self._observed_points(depth_m, camera, object_mask, sensed_mesh)
        if len(observed) < int(self.config["min_points"]):
            kept.status = f"hand not corrected: {len(observed)} hand depth points in view"
            kept.unseen = True
            return kept
        with _one_torch_thread():
            return self._fit(observed, q, T_cam_base, kept, contacts, start, prior)

    def _fit(self, observed, q, T_cam_base, kept: HandCorrection, contacts, start, prior) -> HandCorrection:
        c = self.config
        observed_t = torch.as_tensor(observed)
        # solved in units of the priors' sigmas: radians and metres differ 10x in scale, and
        # L-BFGS unscaled stopped far short of the minimum within its iterations
        sigmas = torch.cat(
            [
                torch.full((len(q),), np.radians(c["joint_offset_std_deg"])),
                torch.full((3,), np.radians(c["base_rotation_std_deg"])),
                torch.full((3,), float(c["base_translation_std_m"])),
            ]
        ).double()
        centre = _parameters(prior, q, T_cam_base) / sigmas
        scaled = (centre if start is None else _parameters(start, q, T_cam_base) / sigmas).clone().requires_grad_(True)
        q_t, T_t = torch.as_tensor(q, dtype=torch.float64), torch.as_tensor(T_cam_base, dtype=torch.float64)

        def unscaled(values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            values = (scaled if values is None else values) * sigmas
            return values[: len(q)], values[len(q) : len(q) + 3], values[len(q) + 3 :]

        # a fit from `start` improves on the encoders as much as that fit did
        before = start.rms_before_mm / 1000.0 if start is not None and start.status == "ok" else None
        after = None
        for _ in range(int(c["rounds"] if contacts is None else contacts.rounds)):
            with torch.no_grad():
                offsets, rotvec, shift = unscaled()
                points, normals = self._posed(q_t + offsets, T_t, rotvec, shift)
            pairs = self._associate(
                observed, points.numpy(), normals.numpy(), float(c["max_distance_m"]), float(c["occluder_margin_m"])
            )
            if pairs is None:
                break
            rows, cols = pairs
            contact_cost = None if contacts is None else self._contact_cost(contacts, q_t, T_t, unscaled)

            def cost() -> torch.Tensor:
                residual = self._residuals(observed_t, rows, cols, q_t, T_t, *unscaled())
                data = _huber(residual, float(c["huber_m"])).mean() / float(c["depth_std_m"]) ** 2
                total = data * min(len(rows), int(c["effective_points"])) + ((scaled - centre) ** 2).sum()
                return total if contact_cost is None else total + contact_cost()

            if before is None:
                with torch.no_grad():
                    before = self._rms(observed_t, rows, cols, q_t, T_t, *unscaled(torch.zeros_like(centre)))
            _minimise(cost, [scaled], int(c["iterations"]))
            with torch.no_grad():
                after = self._rms(observed_t, rows, cols, q_t, T_t, *unscaled())
        offsets, rotvec, shift = (value.detach() for value in unscaled())
        if before is None or after is None or not np.isfinite(after) or before - after < float(c["min_improvement_m"]):
            kept.status = "hand not corrected: the fit did not improve on the encoders"  # an exact hand fits noise only
            return kept
        correction = self._correction(q, T_cam_base, offsets, rotvec, shift, len(observed), before, after)
        correction.on_object = contacts is not None
        return correction

    def _correction(self, q, T_cam_base, offsets, rotvec, shift, count, before, after) -> HandCorrection:
        with torch.no_grad():
            error = np.eye(4)
            error[:3, :3] = rotation_matrix(rotvec).numpy()
            error[:3, 3] = shift.numpy()
        change = offsets.detach().numpy()
        return HandCorrection(
            np.asarray(q, float) + change,
            np.asarray(T_cam_base, float) @ error,
            "ok",
            count,
            1000.0 * before,
            1000.0 * after,
            1000.0 * float(np.linalg.norm(error[:3, 3])),
            float(np.degrees(np.linalg.norm(rotvec.detach().numpy()))),
            float(np.degrees(np.sqrt(np.mean(change**2)))),
        )

    def _rms(self, observed, rows, cols, q, T, offsets, rotvec, shift) -> float:
        residual = self._residuals(observed, rows, cols, q, T, offsets, rotvec, shift)
        return float(
            torch.sqrt(torch.clamp(residual, -3 * self.config["huber_m"], 3 * self.config["huber_m"]).pow(2).mean())
        )

    def _residuals(self, observed, rows, cols, q, T, offsets, rotvec, shift) -> torch.Tensor:
        """Point-to-plane distances (K,) [m] of the paired observed points to the hand at q + offsets."""
        points, normals = self._posed(q + offsets, T, rotvec, shift)
        return ((observed[rows] - points[cols]) * normals[cols]).sum(dim=1)

    def _contact_cost(self, contacts: ObjectContacts, q: torch.Tensor, T: torch.Tensor, unscaled):
        """The contacts' cost as a function of the fit's parameters (`unscaled()`), their surface
        targets taken at the parameters' present values (refreshed each round, as the depth pairs)."""
        with torch.no_grad():
            offsets, rotvec, shift = unscaled()
            nearest, normals = contacts.targets(self._taxels(contacts, q + offsets, T, rotvec, shift).numpy())

        def cost() -> torch.Tensor:
            offsets, rotvec, shift = unscaled()
            return contacts.cost(self._taxels(contacts, q + offsets, T, rotvec, shift), nearest, normals)

        return cost

    def _taxels(self, contacts: ObjectContacts, q, T_cam_base, rotvec, shift) -> torch.Tensor:
        """The contacts' taxel positions (K, 3) [m, camera frame] on the hand at q, based as in _posed."""
        R, t = _based(T_cam_base, rotvec, shift)
        poses = self.model.link_poses_torch(q)
        local = torch.as_tensor(contacts.positions)
        rotations = torch.stack([poses[link][:3, :3] for link in contacts.links])
        origins = torch.stack([poses[link][:3, 3] for link in contacts.links])
        in_base = torch.einsum("kij,kj->ki", rotations, local) + origins
        return in_base @ R.T + t

    def _posed(self, q: torch.Tensor, T_cam_base: torch.Tensor, rotvec: torch.Tensor, shift: torch.Tensor):
        """Surface points and normals (N, 3) of the hand at q, based at T_cam_base @ (R(rotvec), shift)."""
        R, t = _based(T_cam_base, rotvec, shift)
        poses = self.model.link_poses_torch(q)
        points, normals = [], []
        for link, (local, local_normals) in self.samples.items():
            T = poses[link]
            rotation = R @ T[:3, :3]
            points.append(local @ rotation.T + (R @ T[:3, 3] + t))
            normals.append(local_normals @ rotation.T)
        return torch.cat(points), torch.cat(normals)

    def _observed_points(self, depth_m, camera, object_mask, sensed_mesh) -> np.ndarray:
        """Depth points near the predicted hand silhouette, off the object's mask [m, camera frame]."""
        from tactile_pose_refiner.core.gradients.render.base import mesh_silhouette

        c = self.config
        near = mesh_silhouette(sensed_mesh.vertices, sensed_mesh.faces, camera)
        if not near.any():
            return np.zeros((0, 3))
        near = binary_dilation(near, iterations=int(c["search_px"]))
        if object_mask is not None:
            near &= ~binary_dilation(np.asarray(object_mask) > 0, iterations=int(c["object_margin_px"]))
        depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0)
        points = camera.backproject(depth, near)
        if len(points) > int(c["max_points"]):
            points = points[np.random.default_rng(0).choice(len(points), int(c["max_points"]), replace=False)]
        return points

    @staticmethod
    def _associate(observed, points, normals, max_distance, occluder_margin):
        """(observed rows, model cols): each observed point with its nearest camera-facing model
        point within max_distance and not nearer the camera than it by occluder_margin (an
        occluder's pixel); None when fewer than 10 pair up."""
        facing = np.einsum("nc,nc->n", normals, points) < 0.0
        candidates = np.flatnonzero(facing)
        if len(candidates) == 0:
            return None
        distance, nearest = cKDTree(points[candidates]).query(observed, distance_upper_bound=max_distance)
        rows = np.flatnonzero(np.isfinite(distance))
        cols = candidates[nearest[rows]]
        behind = observed[rows, 2] > points[cols, 2] - occluder_margin
        rows, cols = rows[behind], cols[behind]
        if len(rows) < 10:
            return None
        return torch.as_tensor(rows), torch.as_tensor(cols)


def _parameters(correction: HandCorrection | None, q: np.ndarray, T_cam_base: np.ndarray) -> torch.Tensor:
    """(J + 6,) the joint offsets, base rotation vector and shift a correction made (zeros: none)."""
    if correction is None or correction.status != "ok":
        return torch.zeros(len(q) + 6, dtype=torch.float64)
    error = np.linalg.inv(T_cam_base) @ correction.T_cam_base
    rotvec = Rotation.from_matrix(error[:3, :3]).as_rotvec()
    return torch.as_tensor(np.concatenate([correction.q - q, rotvec, error[:3, 3]]), dtype=torch.float64)


def _based(T_cam_base: torch.Tensor, rotvec: torch.Tensor, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation and translation of the base pose T_cam_base corrected by (R(rotvec), shift) about the base."""
    return T_cam_base[:3, :3] @ rotation_matrix(rotvec), T_cam_base[:3, :3] @ shift + T_cam_base[:3, 3]


@contextlib.contextmanager
def _one_torch_thread():
    """Small tensors: one thread is fastest, and a second pool's threads spinning between calls
    halved the speed of SciPy's minimiser beside them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _minimise(cost, parameters: list[torch.Tensor], iterations: int) -> None:
    """cost() minimised over the parameters in place: SciPy's L-BFGS-B with torch's gradient
    (torch.optim's first optimiser imports torch._dynamo, 1.5 s and more on a node's first frame)."""
    splits = np.cumsum([p.numel() for p in parameters])[:-1]

    def set_parameters(x: np.ndarray) -> None:
        with torch.no_grad():
            for parameter, values in zip(parameters, np.split(x, splits)):
                parameter.copy_(torch.as_tensor(values))

    def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        set_parameters(x)
        value = cost()
        gradients = torch.autograd.grad(value, parameters)
        return float(value.detach()), np.concatenate([g.numpy().ravel() for g in gradients])

    start = np.concatenate([p.detach().numpy().ravel() for p in parameters])
    options = {"maxiter": iterations, "maxfun": iterations * 5 // 4, "ftol": 1e-6}  # torch LBFGS's evaluation budget
    best = minimize(value_and_gradient, start, jac=True, method="L-BFGS-B", options=options)
    set_parameters(best.x)


def _huber(residual: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber's rho of (N,) residuals, in squared units (quadratic within delta)."""
    magnitude = residual.abs()
    return torch.where(magnitude <= delta, residual**2, 2.0 * delta * magnitude - delta**2)
