"""Mesh-to-tactile gradient (paper Eq. 2 on the taxels in contact, positions from hand FK)."""
from __future__ import annotations

import numpy as np
import torch
import trimesh

from tactile_pose_refiner.core.gradients.base import GradientSource, SourceLoss
from tactile_pose_refiner.core.gradients.pairs import PairSearch, PointMeshDistance
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.skin import SkinLayout, TactileModel, TactileReading


def contact_positions(reading: TactileReading, layout: SkinLayout, link_poses: dict[str, np.ndarray],
                      T_frame_base: np.ndarray, threshold: float) -> np.ndarray:
    """(K, 3) positions of the taxels whose force exceeds gamma, in the frame of T_frame_base.

    Positions come from the layout posed by forward kinematics (the message's own positions
    are in link frames too; the layout is the calibrated source). Unknown taxel ids are skipped.
    """
    positions, _, _ = _touching(reading, layout, link_poses, T_frame_base, threshold)
    return positions


def contact_surface_points(reading: TactileReading, layout: SkinLayout,
                           link_poses: dict[str, np.ndarray], T_frame_base: np.ndarray,
                           threshold: float, skin: TactileModel) -> np.ndarray:
    """(K, 3) where the object's surface is at each taxel in contact: the taxel moved along its
    outward normal by the gap the skin model implies, margin - normal force / stiffness (negative
    when pressed in). The soft skin reports force *because* it is compressed: a taxel pressed
    1.5 mm sits 0.5 mm inside the object at the true pose, and Eq. 2 on the bare taxel positions
    would pull the object off the truth (measured from the ground truth: 0.1-0.2 cm, up to 2.8 deg)."""
    positions, normals, forces = _touching(reading, layout, link_poses, T_frame_base, threshold)
    gap = skin.contact_margin_m - np.clip(forces[:, 2], 0.0, None) / skin.stiffness_units_per_m
    return positions + gap[:, None] * normals


def _touching(reading, layout, link_poses, T_frame_base, threshold):
    """Posed positions, outward normals (K, 3) and force rows (K, 3) of the taxels in contact."""
    positions, normals = layout.posed(link_poses, T_frame_base)
    row_of_id = {int(taxel_id): row for row, taxel_id in enumerate(layout.ids)}
    touching = [i for i in np.nonzero(reading.in_contact(threshold))[0]
                if int(reading.taxel_ids[i]) in row_of_id]
    rows = [row_of_id[int(reading.taxel_ids[i])] for i in touching]
    return positions[rows], normals[rows], reading.forces[touching]


class TactileSource(GradientSource):
    """Eq. 2 between the object mesh at the pose and the taxels in contact [mm^2]."""

    name = "tactile"

    def __init__(self, mesh: trimesh.Trimesh, contacts: np.ndarray, config: dict | None = None,
                 distance: MeshDistance | None = None) -> None:
        config = config or load_config("gradients")["tactile"]
        self.min_contacts = int(config["min_contacts"])
        self.distance = PointMeshDistance(
            mesh, contacts, PairSearch(config["mesh_to_points"], config["max_pair_distance_m"]), distance)

    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> SourceLoss:
        return self.distance.source_loss(rotation, translation, self.min_contacts,
                                         "taxels in contact")
