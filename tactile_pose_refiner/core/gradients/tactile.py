"""Mesh-to-tactile gradient (paper Eq. 2 on the taxels in contact, positions from hand FK)."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from tactile_pose_refiner.core.gradients.base import GradientSource, SourceLoss, pose_array
from tactile_pose_refiner.core.gradients.pairs import MM, PairSearch, PointMeshDistance, huber
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.skin import SkinLayout, TactileModel, TactileReading, _touching


def contact_gaps(
    reading: TactileReading,
    layout: SkinLayout,
    link_poses: dict[str, np.ndarray],
    T_frame_base: np.ndarray,
    threshold: float,
    skin: TactileModel,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The taxels in contact as the skin model reads them: positions (K, 3), the signed distance
    (K,) [m] their normal force says the object surface has from each (margin - force /
    stiffness: negative when pressed in), and which are saturated (K,) bool (pressed at least
    that far). The soft skin reports force *because* it is compressed: a taxel pressed 1.5 mm
    sits 0.5 mm inside the object at the true pose, so Eq. 2 on the bare taxels pulls the
    object off the truth (measured: 0.1-0.2 cm, up to 2.8 deg)."""
    positions, _, forces = _touching(reading, layout, link_poses, T_frame_base, threshold)
    gaps = skin.implied_gaps(forces)
    saturated = forces[:, 2] >= skin.max_units - 3.0 * skin.noise_std_units
    return positions, gaps, saturated


class SkinGapDistance(PointMeshDistance):
    """Eq. 2 on a soft skin [mm^2]: the mean over the taxels in contact of the (Huber) square of
    their signed distance to the object surface - the gap their force implies. At the true pose
    each residual is the sensor's noise (measured 1.5-6 um rms on the bench grasps).

    Why not Eq. 2 on the taxel moved along its own normal by the gap: the skin model measures
    the distance to the *nearest* surface point, which lies off the taxel normal wherever the
    finger meets the object at a slant, so those moved points sit off the surface (measured at
    the truth: +0.02..+0.25 mm outside on average, up to 0.4 mm rms) and pull the object into
    the fingers. A saturated taxel says only "at least this far in": it costs only when the
    surface is shallower than its gap."""

    def __init__(
        self,
        mesh: trimesh.Trimesh,
        positions: np.ndarray,
        gaps: np.ndarray,
        saturated: np.ndarray,
        search: PairSearch,
        distance: MeshDistance | None = None,
        huber_mm: float | None = None,
    ) -> None:
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        gaps = np.asarray(gaps, dtype=np.float64).reshape(-1)
        usable = np.isfinite(positions).all(axis=1) & np.isfinite(gaps)
        super().__init__(mesh, positions[usable], search, distance, huber_mm=huber_mm)
        self.gaps, self.saturated = gaps[usable], np.asarray(saturated, dtype=bool).reshape(-1)[usable]

    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> tuple[torch.Tensor, int]:
        T = pose_array(rotation, translation)
        points_local = (self.points - T[:3, 3]) @ T[:3, :3]
        hit, closest, face = self.closest_points(points_local)
        if not hit.any():
            return torch.zeros((), dtype=rotation.dtype, device=rotation.device), 0
        outward = self._outward(points_local[hit], closest, face)
        tensor = lambda array: torch.as_tensor(array, dtype=rotation.dtype, device=rotation.device)  # noqa: E731
        local = (tensor(self.points[hit]) - translation) @ rotation
        # Signed distance, exact in value; its gradient is the outward normal (Danskin, as Eq. 2).
        signed = ((local - tensor(closest)) * tensor(outward)).sum(dim=1)
        residual = signed - tensor(self.gaps[hit])
        residual = torch.where(tensor(self.saturated[hit]) > 0, residual.clamp(min=0.0), residual)
        return huber(residual * MM, self.huber_mm).mean(), int(hit.sum())

    def _outward(self, local: np.ndarray, closest: np.ndarray, face: np.ndarray) -> np.ndarray:
        """(A, 3) unit outward directions at the closest points: along point - closest point,
        signed by the winding number (right on the open scans); the face normal on the surface."""
        offset = local - closest
        length = np.linalg.norm(offset, axis=1, keepdims=True)
        signed, _, _ = self.distance.query(local, self.search.max_distance_m)
        corners = self.vertices[self.faces[face]]
        normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)
        on_surface = length[:, 0] < 1e-9
        direction = np.where(signed[:, None] < 0.0, -1.0, 1.0) * offset / np.maximum(length, 1e-300)
        return np.where(on_surface[:, None], normal, direction)


class TactileSource(GradientSource):
    """Eq. 2 between the object mesh at the pose and the taxels in contact [mm^2]; with the
    gaps their forces imply (contact_gaps), on the soft skin (SkinGapDistance)."""

    name = "tactile"

    def __init__(
        self,
        mesh: trimesh.Trimesh,
        contacts: np.ndarray,
        config: dict | None = None,
        distance: MeshDistance | None = None,
        gaps: np.ndarray | None = None,
        saturated: np.ndarray | None = None,
    ) -> None:
        config = config or load_config("gradients")["tactile"]
        self.min_contacts = int(config["min_contacts"])
        search = PairSearch(config["mesh_to_points"], config["max_pair_distance_m"])
        if gaps is None:
            self.distance = PointMeshDistance(mesh, contacts, search, distance)
        else:
            saturated = np.zeros(len(gaps), dtype=bool) if saturated is None else saturated
            self.distance = SkinGapDistance(mesh, contacts, gaps, saturated, search, distance, config.get("huber_mm"))

    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> SourceLoss:
        return self.distance.source_loss(rotation, translation, self.min_contacts, "taxels in contact")
