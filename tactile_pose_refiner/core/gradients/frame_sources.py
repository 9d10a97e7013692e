"""The gradient sources of one frame, built from what the frame carries. A source whose input is
unusable (NaN joint states, no mask, no depth, no touch) is labelled Unavailable or degraded
(zero weight) — never an exception, never a NaN step."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy.ndimage import binary_dilation

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.gradients.base import GradientSource, Unavailable
from tactile_pose_refiner.core.gradients.depth import DepthSource
from tactile_pose_refiner.core.gradients.physics import PhysicsSource, RigidBody
from tactile_pose_refiner.core.gradients.render.base import mesh_depth
from tactile_pose_refiner.core.gradients.tactile import TactileSource, contact_gaps, contact_positions
from tactile_pose_refiner.core.mask_check import CheckedMask, check_mask
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.hand import HandInputError, HandModel, PosedHand, hand_mesh
from tactile_pose_refiner.core.scene.hand_fit import HandFitter
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
    fitter: HandFitter | None = None

    @classmethod
    def from_config(cls) -> "HandAssets":
        tactile = load_config("tactile")
        from_force = bool(load_config("gradients")["tactile"]["surface_from_force"])
        model = HandModel.from_config()
        correction = load_config("hand").get("correction") or {}
        return cls(model, SkinLayout.from_config(tactile["layout"]),
                   float(tactile["contact_threshold_units"]),
                   float(load_config("physics")["hand_point_spacing_m"]),
                   TactileModel.from_config() if from_force else None,
                   HandFitter(model, correction) if correction.get("enabled", False) else None)

    def posed(self, frame: Frame) -> PosedHand | str:
        """The frame's hand in the camera frame: the encoders' and the calibration's, corrected
        from the hand's own depth pixels where config/hand.yaml `correction` is enabled (the
        PosedHand's `correction` says what it did); or why the joint states cannot be used."""
        sensed = self.posed_sensed(frame)
        if self.fitter is None or isinstance(sensed, str) or frame.depth_mm is None:
            return sensed
        q = self.model.joint_vector(frame.joint_names, frame.joint_positions)
        correction = self.fitter.fit(frame.depth_m, frame.camera, frame.mask, q, frame.T_cam_base, sensed.mesh)
        if correction.status != "ok":
            return replace(sensed, correction=correction)
        corrected = self.model.posed(correction.q, correction.T_cam_base, self.point_spacing)
        return replace(corrected, correction=correction)

    def posed_sensed(self, frame: Frame) -> PosedHand | str:
        """The frame's hand as the encoders and the calibration place it, uncorrected."""
        return self._posed(frame.joint_names, frame.joint_positions, frame.T_cam_base)

    def posed_true(self, frame: Frame) -> PosedHand | str:
        """The frame's true hand where the episode records it (generated with sensor errors),
        else the observed one: what a benchmark's metrics are taken against."""
        if frame.joint_positions_true is None and frame.T_cam_base_true is None:
            return self.posed_sensed(frame)
        q = frame.joint_positions if frame.joint_positions_true is None else frame.joint_positions_true
        T = frame.T_cam_base if frame.T_cam_base_true is None else frame.T_cam_base_true
        return self._posed(frame.joint_names, q, T)

    def _posed(self, names, positions, T_cam_base) -> PosedHand | str:
        try:
            q = self.model.joint_vector(names, positions)
        except HandInputError as exc:
            return f"joint states unusable: {exc}"
        if not np.isfinite(T_cam_base).all():
            return "hand base pose is not finite"
        return self.model.posed(q, T_cam_base, self.point_spacing)


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
    view = FrameView(frame, posed)
    return {name: builders[name](view, obj, hand, posed, T_initial, device, physics_config)
            for name in names}


class FrameView:
    """A frame as the sources read it: its mask checked against depth (core/mask_check.py,
    config/gradients.yaml mask_check), computed once for the depth and render sources."""

    def __init__(self, frame: Frame, posed: PosedHand | str) -> None:
        self.frame = frame
        self.posed = posed

    def __getattr__(self, name):
        return getattr(self.frame, name)

    @cached_property
    def checked_mask(self) -> CheckedMask | None:
        frame = self.frame
        if frame.mask is None:
            return None
        config = load_config("gradients")["mask_check"]
        hand = hand_depth = None
        mesh = hand_mesh(self.posed)
        if mesh is not None and config["band_px"] > 0:
            hand_depth = mesh_depth(mesh.vertices, mesh.faces, frame.camera)
            hand = hand_depth > 0
            if config["hand_dilate_px"] > 0 and hand.any():
                hand = binary_dilation(hand, iterations=int(config["hand_dilate_px"]))
        return check_mask(frame.mask, frame.depth_m, hand, config, hand_depth)

    def object_points(self) -> np.ndarray:
        """(N, 3) depth points of the confirmed object pixels [m, camera frame]."""
        checked = self.checked_mask
        return self.frame.camera.backproject(self.frame.depth_m, None if checked is None else checked.object)


def _physics(frame, obj, hand, posed, T_initial, device, config) -> GradientSource:
    if isinstance(posed, str):
        return Unavailable("physics", posed)
    return PhysicsSource.build(obj.sdf, obj.body, posed.surface_points, T_initial, config, device)


def _depth(frame: FrameView, obj, hand, posed, T_initial, device, _config) -> GradientSource:
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


def _render(frame: FrameView, obj, hand, posed, T_initial, device, _config) -> GradientSource:
    from tactile_pose_refiner.core.gradients.render.source import RenderSource
    checked = frame.checked_mask
    return RenderSource(obj.model, frame.camera, frame.rgb, None if checked is None else checked.object,
                        frame.depth_m, occluders=hand_mesh(posed), reference_pose=T_initial,
                        uncertain=None if checked is None else checked.uncertain)
