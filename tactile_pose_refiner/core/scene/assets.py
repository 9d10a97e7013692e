"""What a frame's refinement needs that is built once: per object (model, SDF, mass properties,
BVH distances) and for the hand (model, skin layout, gamma, hand correction)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.geometry import invert, rotation_angle
from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.hand import HandModel, HandUnusable, PosedHand
from tactile_pose_refiner.core.scene.hand_fit import HandCorrection, HandFitter, ObjectContacts
from tactile_pose_refiner.core.scene.kinematics import HandInputError
from tactile_pose_refiner.core.scene.objects import ObjectModel
from tactile_pose_refiner.core.scene.sdf import SdfGrid, object_sdf
from tactile_pose_refiner.core.scene.skin import SkinLayout, TactileModel, touching_rows


def skin_layout(model: HandModel | None = None) -> SkinLayout:
    """config/tactile.yaml's skin layout placed on the hand's own collision geometry (the
    configured hand's unless given): taxels off its surface by more than
    `layout_surface_tolerance_m` are moved onto it (SkinLayout.placed_on)."""
    tactile = load_config("tactile")
    model = model or HandModel.from_config()
    meshes = {link: geometry.mesh for link, geometry in model.links.items()}
    layout, moved, largest = SkinLayout.from_config(tactile["layout"]).placed_on(
        meshes, float(tactile["layout_surface_tolerance_m"])
    )
    if moved:
        logging.getLogger(__name__).warning(
            "skin layout: %d of %d taxels were off the hand's collision surface (up to %.1f mm) and were moved onto it",
            moved,
            len(layout),
            largest * 1000.0,
        )
    return layout


def _as_fit(frame: Frame, q: np.ndarray, correction: HandCorrection) -> tuple[int, np.ndarray, np.ndarray]:
    """What a frame's fit leaves for later frames: its stamp [ns], joint offsets and base correction (4, 4)."""
    return frame.stamp_ns, correction.q - q, invert(frame.T_cam_base) @ correction.T_cam_base


def mean_fit(fits: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[int, np.ndarray, np.ndarray]:
    """Fits (stamp [ns], joint offsets, base correction (4, 4)) -> the newest stamp with the mean
    offsets and the mean correction (rotation vectors averaged: corrections of a few degrees)."""
    base = np.eye(4)
    rotvecs = [Rotation.from_matrix(f[2][:3, :3]).as_rotvec() for f in fits]
    base[:3, :3] = Rotation.from_rotvec(np.mean(rotvecs, axis=0)).as_matrix()
    base[:3, 3] = np.mean([f[2][:3, 3] for f in fits], axis=0)
    return fits[-1][0], np.mean([f[1] for f in fits], axis=0), base


@dataclass
class ObjectAssets:
    """Per object, built once: the model, its baked SDF, mass properties, BVH distances."""

    model: ObjectModel
    sdf: SdfGrid
    body: RigidBody
    distance: MeshDistance

    @classmethod
    def build(cls, model: ObjectModel, device: str = "cpu") -> ObjectAssets:
        mesh = model.geometry
        return cls(
            model,
            object_sdf(mesh),
            RigidBody.from_mesh(mesh, model.mass_kg, model.com_m, model.inertia_kg_m2),
            MeshDistance(mesh.vertices, mesh.faces, device),
        )


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
    last_fit: tuple[int, np.ndarray, np.ndarray] | None = None  # stamp [ns], joint offsets, base correction
    object_fits: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)  # of fit_to_object, newest last

    @classmethod
    def from_config(cls, model: HandModel | None = None) -> HandAssets:
        """model: a hand of the caller's own (default: config/hand.yaml's)."""
        tactile = load_config("tactile")
        from_force = bool(load_config("gradients")["tactile"]["surface_from_force"])
        model = model or HandModel.from_config()
        correction = load_config("hand").get("correction") or {}
        return cls(
            model,
            skin_layout(model),
            float(tactile["contact_threshold_units"]),
            float(load_config("physics")["hand_point_spacing_m"]),
            TactileModel.from_config() if from_force else None,
            HandFitter(model, correction) if correction.get("enabled", False) else None,
        )

    def posed(self, frame: Frame) -> PosedHand | HandUnusable:
        """The frame's hand in the camera frame: the encoders' and the calibration's, corrected
        from the hand's own depth pixels where config/hand.yaml `correction` is enabled (the
        PosedHand's `correction` says what it did); or why the joint states cannot be used. A
        frame that shows none of the hand takes the last fit's corrections if it is at most
        `recall_s` older: the encoders' offsets and the calibration do not change between frames."""
        sensed = self.posed_sensed(frame)
        if self.fitter is None or isinstance(sensed, HandUnusable):
            return sensed
        q = self.model.joint_vector(frame.joint_names, frame.joint_positions)
        if frame.depth_mm is None:
            correction = HandCorrection(q, frame.T_cam_base, "hand not corrected: no depth image", unseen=True)
        else:
            prior = self._contact_prior(frame, q)
            correction = self.fitter.fit(
                frame.depth_m, frame.camera, frame.mask, q, frame.T_cam_base, sensed.mesh, prior=prior
            )
        if correction.status == "ok":
            self.last_fit = _as_fit(frame, q, correction)
        elif correction.unseen:
            correction = self._recalled(frame, q) or correction
        if correction.status != "ok":
            return replace(sensed, correction=correction)
        corrected = self.model.posed(correction.q, correction.T_cam_base, self.point_spacing)
        return replace(corrected, correction=correction)

    def fit_to_object(
        self, frame: Frame, T_cam_obj: np.ndarray, mesh: trimesh.Trimesh, posed: PosedHand | HandUnusable
    ) -> HandCorrection | None:
        """The hand refit on a frame whose object the camera placed at T_cam_obj (object-frame
        mesh), from its depth fit (`posed`): its depth pixels and its touching taxels on the
        object's surface together. The fingers behind the object show no depth pixels, only their
        contacts; a later frame without the camera recalls the mean of the last `average` such
        fits (each carries its frame's pose error) before the depth fit (`recall_s`). None where
        config/hand.yaml `correction.object_contacts` is off, `posed` is no depth fit of this
        frame (the encoders' hand fit its pixels, or none were seen), the last such fit is under
        `every_s` old, or the frame lacks joints or enough contacts."""
        config = self._object_contacts_config()
        start = getattr(posed, "correction", None)  # HandUnusable: none
        depth_fitted = start is not None and start.status == "ok" and start.recalled_s is None
        if not config.get("enabled", False) or not depth_fitted or self._object_fit_fresh(frame, config):
            return None
        sensed = self.posed_sensed(frame)
        contacts = self._object_contacts(frame, T_cam_obj, mesh, config)
        if contacts is None or isinstance(sensed, HandUnusable):
            return None
        q = self.model.joint_vector(frame.joint_names, frame.joint_positions)
        correction = self.fitter.fit(
            frame.depth_m, frame.camera, frame.mask, q, frame.T_cam_base, sensed.mesh, contacts, start
        )
        if correction.status == "ok":
            self.object_fits = [*self.object_fits, _as_fit(frame, q, correction)][-int(config["average"]) :]
        return correction

    def _contact_prior(self, frame: Frame, q: np.ndarray) -> HandCorrection | None:
        """Where the last contact fits put the hand (config `as_prior`): the depth fit's prior mean,
        so that fingers the camera cannot see stay where their contacts placed them."""
        if not self._object_contacts_config().get("as_prior", False):
            return None
        return self._recalled(frame, q, depth_fits=False)

    def _object_contacts_config(self) -> dict:
        return (self.fitter.config.get("object_contacts") or {}) if self.fitter else {}

    def _object_fit_fresh(self, frame: Frame, config: dict) -> bool:
        """An object-contact fit under `every_s` old stands (the offsets change slowly; a refit costs ~0.3 s)."""
        if not self.object_fits:
            return False
        age_s = (frame.stamp_ns - self.object_fits[-1][0]) * 1e-9
        return 0.0 <= age_s < float(config["every_s"])

    def _object_contacts(self, frame: Frame, T_cam_obj: np.ndarray, mesh: trimesh.Trimesh, config: dict):
        if frame.tactile is None or not np.isfinite(T_cam_obj).all():
            return None
        rows, forces = touching_rows(frame.tactile, self.layout, self.contact_threshold)
        if len(rows) < int(config["min_taxels"]):
            return None
        gaps = self.skin.implied_gaps(forces) if self.skin is not None else np.zeros(len(rows))
        return ObjectContacts(
            [self.layout.links[row] for row in rows],
            self.layout.positions[rows],
            gaps,
            mesh,
            np.asarray(T_cam_obj, dtype=np.float64),
            float(config["std_m"]),
            float(config["huber_m"]),
            int(config["rounds"]),
        )

    def _recalled(self, frame: Frame, q: np.ndarray, depth_fits: bool = True) -> HandCorrection | None:
        """The last fit's corrections applied to this frame, where recent enough: the last
        object-contact fits' mean, else (depth_fits) the last depth fit's (None: neither; a stamp
        before a fit's is a jump back in time, and the fit is forgotten)."""
        object_fit = mean_fit(self.object_fits) if self.object_fits else None
        fits = [fit for fit in (object_fit, self.last_fit if depth_fits else None) if fit is not None]
        if any(frame.stamp_ns < fit[0] for fit in fits):
            self.forget()
            return None
        recall_s = float(self.fitter.config.get("recall_s", 0.0))
        recent = [fit for fit in fits if (frame.stamp_ns - fit[0]) * 1e-9 <= recall_s]
        if not recent:
            return None
        stamp_ns, offsets, base = recent[0]
        age_s = (frame.stamp_ns - stamp_ns) * 1e-9
        return HandCorrection(
            q + offsets,
            frame.T_cam_base @ base,
            base_shift_mm=1000.0 * float(np.linalg.norm(base[:3, 3])),
            base_turn_deg=float(np.degrees(rotation_angle(np.eye(3), base[:3, :3]))),
            joint_change_rms_deg=float(np.degrees(np.sqrt(np.mean(offsets**2)))),
            recalled_s=age_s,
            on_object=recent[0] is object_fit,
        )

    def forget(self) -> None:
        """Drop the last fits (another episode: other encoder offsets and calibration)."""
        self.last_fit = None
        self.object_fits = []

    def posed_sensed(self, frame: Frame) -> PosedHand | HandUnusable:
        """The frame's hand as the encoders and the calibration place it, uncorrected."""
        return self._posed(frame.joint_names, frame.joint_positions, frame.T_cam_base)

    def posed_true(self, frame: Frame) -> PosedHand | HandUnusable:
        """The frame's true hand where the episode records it (generated with sensor errors),
        else the observed one: what a benchmark's metrics are taken against."""
        if frame.joint_positions_true is None and frame.T_cam_base_true is None:
            return self.posed_sensed(frame)
        q = frame.joint_positions if frame.joint_positions_true is None else frame.joint_positions_true
        T = frame.T_cam_base if frame.T_cam_base_true is None else frame.T_cam_base_true
        return self._posed(frame.joint_names, q, T)

    def _posed(self, names, positions, T_cam_base) -> PosedHand | HandUnusable:
        try:
            q = self.model.joint_vector(names, positions)
        except HandInputError as exc:
            return HandUnusable(f"joint states unusable: {exc}")
        if not np.isfinite(T_cam_base).all():
            return HandUnusable("hand base pose is not finite")
        return self.model.posed(q, T_cam_base, self.point_spacing)
