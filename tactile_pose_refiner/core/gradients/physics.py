"""Differentiable physics gradient, L_phys = L_DP + lambda |dt|^2 (paper Eq. 1), after Grasp'D.

The hand is fixed (link poses from the joint states); its collision surface is sampled into
points. The object, starting at rest at the candidate pose, is simulated for a few steps
against those points (core/physics/contact.py). L_DP measures how far the contacts push the
object (COM displacement and rotation after the rollout) plus the penetration energy along it.
"""

from __future__ import annotations

import numpy as np
import torch

from tactile_pose_refiner.core.gradients.base import GradientSource, SourceLoss, degraded, pose_array
from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.physics.contact import HandContactModel, ReachableSubset, Rollout, contact_model
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.sdf import SdfGrid


class PhysicsSource(GradientSource):
    """L_phys = L_DP + lambda |t - t_initial|^2 (Eq. 1), millimetre units."""

    name = "physics"

    def __init__(self, model: HandContactModel, initial_translation: np.ndarray, config: dict | None = None) -> None:
        self.model = model
        self.config = config or model.config
        self.initial_translation = np.asarray(initial_translation, dtype=np.float64)
        self.reachable = ReachableSubset(model, float(self.config["rollout"].get("reach_m", 0.0)))

    @classmethod
    def build(
        cls,
        sdf: SdfGrid,
        body: RigidBody,
        hand_points: np.ndarray,
        T_initial: np.ndarray,
        config: dict | None = None,
        device: str = "cpu",
    ) -> PhysicsSource:
        """Hand points (N, 3) in the camera frame around the initial pose T_initial (4, 4)."""
        config = config or load_config("physics")
        return cls(contact_model(sdf, body, hand_points, T_initial, config, device), T_initial[:3, 3], config)

    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> SourceLoss:
        if self.model.point_count == 0:
            return degraded("no hand surface points", rotation, translation)
        weights = self.config["loss"]
        rollout = self._rollout(rotation, translation)
        mm = 1000.0
        radius_mm = self.model.body.radius * mm
        l_dp = (
            weights["displacement_weight"] * (rollout.displacement() * mm) ** 2
            + weights["rotation_weight"] * (rollout.rotation_sine() * radius_mm) ** 2
            + weights["penetration_weight"] * rollout.penetration_sq.mean() * mm**2
        )
        shift = translation - torch.as_tensor(
            self.initial_translation, dtype=translation.dtype, device=translation.device
        )
        value = l_dp + weights["lambda_translation"] * ((shift * mm) ** 2).sum()
        if not torch.isfinite(value):
            return degraded("non-finite physics loss", rotation, translation)
        return SourceLoss(value)

    def _rollout(self, rotation: torch.Tensor, translation: torch.Tensor) -> Rollout:
        """The rollout from (R, t) with the hand points it can reach, else with all of them."""
        settings = self.config["rollout"]

        def run(model):
            return model.rollout(
                rotation, translation, int(settings["steps"]), float(settings["dt_s"]), settings["gravity_m_s2"]
            )

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
