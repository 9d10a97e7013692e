"""The gradient sources of one frame, built from what the frame carries. A source whose input is
unusable (NaN joint states, no mask, no depth, no touch) is labelled Unavailable or degraded
(zero weight) — never an exception, never a NaN step."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.gradients.base import GradientSource, Unavailable
from tactile_pose_refiner.core.gradients.depth import DepthSource
from tactile_pose_refiner.core.gradients.physics import PhysicsSource, RigidBody
from tactile_pose_refiner.core.gradients.tactile import TactileSource, contact_gaps, contact_positions
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.hand import HandInputError, HandModel, PosedHand, hand_mesh
from tactile_pose_refiner.core.scene.objects import ObjectModel
from tactile_pose_refiner.core.scene.sdf import SdfGrid, object_sdf
from tactile_pose_refiner.core.scene.skin import SkinLayout, TactileModel


@dataclass
class ObjectAssets:
    """Per object, built once: the model, its baked SDF, mass properties, BVH distances."""

    model: ObjectModel
    sdf: SdfGrid
    body: RigidBody
    distance: MeshDistance

    @classmethod
    def build(cls, model: ObjectModel, device: str = "cpu") -> "ObjectAssets":
        mesh = model.geometry
        return cls(model, object_sdf(mesh), RigidBody.from_mesh(mesh, model.mass_kg),
                   MeshDistance(mesh.vertices, mesh.faces, device))


@dataclass
class HandAssets:
    """The hand model, the skin layout and gamma (config/tactile.yaml, config/physics.yaml).
    skin: the skin's force model when the tactile loss reads the surface from the forces
    (config/gradients.yaml tactile.surface_from_force), else None: bare taxel positions."""

    model: HandModel
    layout: SkinLayout
    contact_threshold: float
    point_spacing: float
    skin: TactileModel | None = None

    @classmethod
    def from_config(cls) -> "HandAssets":
        tactile = load_config("tactile")
        from_force = bool(load_config("gradients")["tactile"]["surface_from_force"])
        return cls(HandModel.from_config(), SkinLayout.from_config(tactile["layout"]),
                   float(tactile["contact_threshold_units"]),
                   float(load_config("physics")["hand_point_spacing_m"]),
                   TactileModel.from_config() if from_force else None)

    def posed(self, frame: Frame) -> PosedHand | str:
        """The frame's hand in the camera frame, or why the joint states cannot be used."""
        try:
            q = self.model.joint_vector(frame.joint_names, frame.joint_positions)
        except HandInputError as exc:
            return f"joint states unusable: {exc}"
        if not np.isfinite(frame.T_cam_base).all():
            return "hand base pose is not finite"
        return self.model.posed(q, frame.T_cam_base, self.point_spacing)


def build_sources(frame: Frame, obj: ObjectAssets, hand: HandAssets, T_initial: np.ndarray,
                  names: tuple[str, ...] = ("physics", "depth", "tactile"),
                  device: str = "cpu", posed: PosedHand | str | None = None,
                  physics_config: dict | None = None) -> dict[str, GradientSource]:
    """name -> source for one frame; T_initial (4, 4) is the pose refinement starts from.
    posed: the frame's hand when the caller has it already; physics_config: overrides
    config/physics.yaml (e.g. a wider hand point band for a noisy start)."""
    posed = hand.posed(frame) if posed is None else posed
    builders = {"physics": _physics, "depth": _depth, "tactile": _tactile, "render": _render}
    unknown = set(names) - set(builders)
    if unknown:
        raise ValueError(f"unknown gradient sources {sorted(unknown)}; known: {sorted(builders)}")
    return {name: builders[name](frame, obj, hand, posed, T_initial, device, physics_config)
            for name in names}


def _physics(frame, obj, hand, posed, T_initial, device, config) -> GradientSource:
    if isinstance(posed, str):
        return Unavailable("physics", posed)
    return PhysicsSource.build(obj.sdf, obj.body, posed.surface_points, T_initial, config, device)


def _depth(frame, obj, hand, posed, T_initial, device, _config) -> GradientSource:
    if frame.mask is None:
        return Unavailable("depth", "no segmentation mask")
    return DepthSource(obj.model.geometry, frame.object_points(), distance=obj.distance,
                       occluders=hand_mesh(posed))


def _tactile(frame, obj, hand, posed, T_initial, device, _config) -> GradientSource:
    if isinstance(posed, str):
        return Unavailable("tactile", posed)
    if hand.skin is None:
        contacts = contact_positions(frame.tactile, hand.layout, posed.link_poses,
                                     posed.T_frame_base, hand.contact_threshold)
        return TactileSource(obj.model.geometry, contacts, distance=obj.distance)
    contacts, gaps, saturated = contact_gaps(frame.tactile, hand.layout, posed.link_poses,
                                             posed.T_frame_base, hand.contact_threshold, hand.skin)
    return TactileSource(obj.model.geometry, contacts, distance=obj.distance, gaps=gaps,
                         saturated=saturated)


def _render(frame, obj, hand, posed, T_initial, device, _config) -> GradientSource:
    from tactile_pose_refiner.core.gradients.render.source import RenderSource
    return RenderSource(obj.model, frame.camera, frame.rgb, frame.mask, frame.depth_m,
                        occluders=hand_mesh(posed), reference_pose=T_initial)
