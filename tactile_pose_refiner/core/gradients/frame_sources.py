"""The gradient sources of one frame, built from what the frame carries. A source whose input is
unusable (NaN joint states, no mask, no depth, no touch) is labelled Unavailable or degraded
(zero weight) — never an exception, never a NaN step."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import numpy as np
from scipy.ndimage import binary_dilation

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.gradients.base import GradientSource, Unavailable
from tactile_pose_refiner.core.gradients.depth import DepthSource
from tactile_pose_refiner.core.gradients.pairs import SeenOccluders
from tactile_pose_refiner.core.gradients.physics import PhysicsSource
from tactile_pose_refiner.core.gradients.render.base import mesh_depth
from tactile_pose_refiner.core.gradients.tactile import TactileSource, contact_gaps
from tactile_pose_refiner.core.mask_check import CheckedMask, check_mask
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.assets import HandAssets, ObjectAssets
from tactile_pose_refiner.core.scene.hand import HandUnusable, PosedHand, hand_mesh
from tactile_pose_refiner.core.scene.skin import contact_positions


def build_sources(
    frame: Frame,
    obj: ObjectAssets,
    hand: HandAssets,
    T_initial: np.ndarray,
    names: tuple[str, ...] = ("physics", "depth", "tactile"),
    device: str = "cpu",
    posed: PosedHand | HandUnusable | None = None,
    physics_config: dict | None = None,
) -> dict[str, GradientSource]:
    """name -> source for one frame; T_initial (4, 4) is the pose refinement starts from.
    posed: the frame's hand when the caller has it already; physics_config: overrides
    config/physics.yaml (e.g. a wider hand point band for a noisy start)."""
    posed = hand.posed(frame) if posed is None else posed
    unknown = set(names) - set(SOURCE_BUILDERS)
    if unknown:
        raise ValueError(f"unknown gradient sources {sorted(unknown)}; known: {sorted(SOURCE_BUILDERS)}")
    view = FrameView(frame, posed)
    return {name: SOURCE_BUILDERS[name](view, obj, hand, posed, T_initial, device, physics_config) for name in names}


class FrameView:
    """A frame as the sources read it: its mask checked against depth (core/mask_check.py,
    config/gradients.yaml mask_check), computed once for the depth and render sources."""

    def __init__(self, frame: Frame, posed: PosedHand | HandUnusable) -> None:
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

    def seen_occluders(self) -> SeenOccluders | None:
        """What the depth image shows in front of the object, or None (nothing, or no check)."""
        checked = self.checked_mask
        if checked is None or checked.occluded is None or not checked.occluded.any():
            return None
        return SeenOccluders(self.frame.camera, self.frame.depth_m, checked.occluded)

    def object_points(self) -> np.ndarray:
        """(N, 3) depth points of the confirmed object pixels [m, camera frame]."""
        checked = self.checked_mask
        return self.frame.camera.backproject(self.frame.depth_m, None if checked is None else checked.object)


def _physics(frame, obj, hand, posed, T_initial, device, config) -> GradientSource:
    if isinstance(posed, HandUnusable):
        return Unavailable("physics", posed.reason)
    return PhysicsSource.build(obj.sdf, obj.body, posed.surface_points, T_initial, config, device)


def _depth(frame: FrameView, obj, hand, posed, T_initial, device, _config) -> GradientSource:
    if frame.mask is None:
        return Unavailable("depth", "no segmentation mask")
    return DepthSource(
        obj.model.geometry,
        frame.object_points(),
        distance=obj.distance,
        occluders=hand_mesh(posed),
        seen_occluders=frame.seen_occluders(),
    )


def _tactile(frame, obj, hand, posed, T_initial, device, _config) -> GradientSource:
    if isinstance(posed, HandUnusable):
        return Unavailable("tactile", posed.reason)
    if hand.skin is None:
        contacts = contact_positions(
            frame.tactile, hand.layout, posed.link_poses, posed.T_frame_base, hand.contact_threshold
        )
        return TactileSource(obj.model.geometry, contacts, distance=obj.distance)
    contacts, gaps, saturated = contact_gaps(
        frame.tactile, hand.layout, posed.link_poses, posed.T_frame_base, hand.contact_threshold, hand.skin
    )
    return TactileSource(obj.model.geometry, contacts, distance=obj.distance, gaps=gaps, saturated=saturated)


def _render(frame: FrameView, obj, hand, posed, T_initial, device, _config) -> GradientSource:
    from tactile_pose_refiner.core.gradients.render.source import RenderSource

    checked = frame.checked_mask
    return RenderSource(
        obj.model,
        frame.camera,
        frame.rgb,
        None if checked is None else checked.object,
        frame.depth_m,
        occluders=hand_mesh(posed),
        reference_pose=T_initial,
        uncertain=None if checked is None else checked.unseen,
    )


# name -> builder(frame view, object assets, hand assets, posed hand, T_initial, device, physics
# config override): a new gradient source adds its module and one entry here (docs/development.md).
SourceBuilder = Callable[
    [FrameView, ObjectAssets, HandAssets, "PosedHand | HandUnusable", np.ndarray, str, "dict | None"], GradientSource
]
SOURCE_BUILDERS: dict[str, SourceBuilder] = {
    "physics": _physics,
    "render": _render,
    "depth": _depth,
    "tactile": _tactile,
}
