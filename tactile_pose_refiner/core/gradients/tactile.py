"""Mesh-to-tactile gradient (paper Eq. 2 on the taxels in contact, positions from hand FK)."""
from __future__ import annotations

import numpy as np
import torch
import trimesh

from tactile_pose_refiner.core.gradients.base import GradientSource, SourceLoss
from tactile_pose_refiner.core.gradients.pairs import PairSearch, PointMeshDistance
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.skin import SkinLayout, TactileReading


def contact_positions(reading: TactileReading, layout: SkinLayout, link_poses: dict[str, np.ndarray],
                      T_frame_base: np.ndarray, threshold: float) -> np.ndarray:
    """(K, 3) positions of the taxels whose force exceeds gamma, in the frame of T_frame_base.

    Positions come from the layout posed by forward kinematics (the message's own positions
    are in link frames too; the layout is the calibrated source). Unknown taxel ids are skipped.
    """
    positions, _ = layout.posed(link_poses, T_frame_base)
    row_of_id = {int(taxel_id): row for row, taxel_id in enumerate(layout.ids)}
    touching = reading.taxel_ids[reading.in_contact(threshold)]
    rows = [row_of_id[int(i)] for i in touching if int(i) in row_of_id]
    return positions[rows]


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
