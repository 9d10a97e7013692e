"""Evaluation metrics (paper §IV-C, SPEC §6): PE, OE (Eq. 3), CA, IV, |dCA|, |dIV|, and the
DeepSimHO stability metrics SD, SR, CP, PD. Poses are T_cam_obj (4, 4); the hand is a PosedHand
in the same (camera) frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import trimesh
from manifold3d import Error, Manifold, Mesh, OpType

from tactile_pose_refiner.core.geometry import invert, matrix_to_pose, transform_points
from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.physics.contact import contact_model
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.hand import PosedHand
from tactile_pose_refiner.core.scene.objects import ObjectModel
from tactile_pose_refiner.core.scene.sdf import SdfGrid, object_sdf

EXACT, WINDING_NUMBER = "exact", "winding_number"


def position_error_cm(T: np.ndarray, T_gt: np.ndarray) -> float:
    """PE = |t - t_gt| [cm]."""
    return float(np.linalg.norm(np.asarray(T)[:3, 3] - np.asarray(T_gt)[:3, 3]) * 100.0)


def orientation_error_deg(T: np.ndarray, T_gt: np.ndarray) -> float:
    """OE = arccos(2 <q, q_gt>^2 - 1) [deg] (Eq. 3): the angle of the relative rotation."""
    q, q_gt = matrix_to_pose(T)[1], matrix_to_pose(T_gt)[1]
    cosine = np.clip(2.0 * float(np.dot(q, q_gt)) ** 2 - 1.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cosine)))


@dataclass(frozen=True)
class Volume:
    """Intersection volume [cm^3] and how it was obtained (exact booleans or winding numbers)."""

    cm3: float
    method: str


def to_manifold(mesh: trimesh.Trimesh) -> Manifold:
    return Manifold(
        Mesh(vert_properties=np.asarray(mesh.vertices, np.float32), tri_verts=np.asarray(mesh.faces, np.uint32))
    )


class ObjectMetrics:
    """CA, IV and penetration of one object against the hand; samples and meshes built once."""

    def __init__(self, model: ObjectModel, config: dict | None = None, sdf: SdfGrid | None = None) -> None:
        self.config = config or load_config("metrics")
        self.model = model
        mesh = model.geometry
        area = self.config["contact_area"]
        self.samples, _ = trimesh.sample.sample_surface(mesh, int(area["samples"]), seed=int(area["seed"]))
        self.area_cm2 = float(mesh.area) * 1e4
        self.distance = MeshDistance(mesh.vertices, mesh.faces)
        self._sdf = sdf
        manifold = to_manifold(mesh) if model.watertight else None
        self.manifold = manifold if manifold is not None and manifold.status() == Error.NoError else None

    @property
    def sdf(self) -> SdfGrid:
        if self._sdf is None:
            self._sdf = object_sdf(self.model.geometry)
        return self._sdf

    # --- contact area --------------------------------------------------------------------------
    def contact_area_cm2(self, T: np.ndarray, hand: PosedHand) -> float:
        """CA: share of surface samples within threshold of the hand surface x object area."""
        threshold = float(self.config["contact_area"]["threshold_m"])
        points = transform_points(T, self.samples)
        distance = hand.distance.unsigned(points, threshold)
        return float(np.mean(distance < threshold) * self.area_cm2)

    # --- intersection volume -------------------------------------------------------------------
    def intersection_volume(self, T: np.ndarray, hand: PosedHand) -> Volume:
        """IV: exact booleans (manifold3d, links unioned first so overlaps count once) when the
        object is a closed manifold; otherwise booleans with its closed winding-number proxy
        (manifold3d would return an empty result, i.e. a silent 0, on a scan with holes)."""
        links = [to_manifold(m) for m in hand.link_meshes.values()]
        if not all(link.status() == Error.NoError for link in links):
            raise ValueError("hand collision meshes are not closed manifolds")
        union = Manifold.batch_boolean(links, OpType.Add)
        exact = self.manifold is not None
        solid = self.manifold if exact else self.closed_proxy
        volume = (union ^ solid.transform(np.asarray(T)[:3, :4])).volume() * 1e6
        return Volume(volume, EXACT if exact else WINDING_NUMBER)

    def deviation_from_truth(self, T: np.ndarray, T_gt: np.ndarray, hand: PosedHand) -> tuple[float, float]:
        """abs(dCA) [cm^2] and abs(dIV) [cm^3]: how far the pose's contact area and intersection
        volume are from those of the ground-truth pose (paper §IV-C deviation metrics)."""
        dca = abs(self.contact_area_cm2(T, hand) - self.contact_area_cm2(T_gt, hand))
        div = abs(self.intersection_volume(T, hand).cm3 - self.intersection_volume(T_gt, hand).cm3)
        return dca, div

    @cached_property
    def body(self) -> RigidBody:
        return RigidBody.from_mesh(self.model.geometry, self.model.mass_kg)

    @cached_property
    def closed_proxy(self) -> Manifold:
        """A closed stand-in for a scan with holes: marching cubes of its winding-number SDF."""
        return to_manifold(self.sdf.closed_mesh())

    # --- stability (DeepSimHO) ----------------------------------------------------------------
    def stability(self, T: np.ndarray, hand: PosedHand, physics: dict | None = None) -> Stability:
        """Simulate the object released at T in the fixed hand under gravity (no gradient):
        SD = COM displacement after `duration_s`; contact when the hand is within
        `contact_distance_m`; PD = deepest penetration."""
        physics = physics or load_config("physics")
        config = physics["stability"]
        simulation = {**physics, "contact": {**physics["contact"], **config.get("contact", {})}}
        model = contact_model(self.sdf, self.body, hand.surface_points, T, simulation)
        steps = int(round(float(config["duration_s"]) / float(config["dt_s"])))
        R = torch.as_tensor(np.asarray(T)[:3, :3], dtype=torch.float64)
        t = torch.as_tensor(np.asarray(T)[:3, 3], dtype=torch.float64)
        with torch.no_grad():
            gravity = hand.T_frame_base[:3, :3] @ np.asarray(config["gravity_m_s2"], dtype=np.float64)
            rollout = model.rollout(R, t, steps, float(config["dt_s"]), gravity)
        hand_in_object = self._hand_in_object(T, hand)
        return Stability(
            displacement_cm=float(rollout.displacement()) * 100.0,
            in_contact=float(hand_in_object.min()) <= float(config["contact_distance_m"]),
            penetration_cm=self._deepest_mm(T, hand, hand_in_object) / 10.0,
        )

    # --- penetration ---------------------------------------------------------------------------
    def penetration_depth_max_mm(self, T: np.ndarray, hand: PosedHand) -> float:
        """Deepest penetration either way: hand surface points inside the object, object surface
        samples inside the hand [mm]; 0 when they do not touch."""
        return self._deepest_mm(T, hand, self._hand_in_object(T, hand))

    def _hand_in_object(self, T: np.ndarray, hand: PosedHand) -> np.ndarray:
        """(N,) signed distance of each hand surface point to the object at T [m]."""
        return self.distance.query(transform_points(invert(T), hand.surface_points), 0.05)[0]

    def _deepest_mm(self, T: np.ndarray, hand: PosedHand, hand_in_object: np.ndarray) -> float:
        count = int(self.config["penetration"]["object_samples"])
        object_in_hand = hand.distance.query(transform_points(T, self.samples[:count]), 0.05)[0]
        deepest = min(float(hand_in_object.min(initial=0.0)), float(object_in_hand.min(initial=0.0)))
        return -deepest * 1000.0


@dataclass(frozen=True)
class Stability:
    """One pose's simulation: SD [cm], hand-object contact, max penetration PD [cm]."""

    displacement_cm: float
    in_contact: bool
    penetration_cm: float


def stability_summary(results: list[Stability], success_displacement_m: float) -> dict[str, float]:
    """DeepSimHO aggregates: SD mean [cm], SR [%] (SD below the threshold), CP [%] (share in
    contact), PD [cm] (mean max penetration of the poses in contact; NaN-free: 0 when none)."""
    if not results:
        return {"sd_cm": 0.0, "sr_pct": 0.0, "cp_pct": 0.0, "pd_cm": 0.0, "count": 0}
    displacement = np.array([r.displacement_cm for r in results])
    contact = [r for r in results if r.in_contact]
    return {
        "sd_cm": float(displacement.mean()),
        "sr_pct": float(np.mean(displacement < success_displacement_m * 100.0) * 100.0),
        "cp_pct": 100.0 * len(contact) / len(results),
        "pd_cm": float(np.mean([r.penetration_cm for r in contact])) if contact else 0.0,
        "count": len(results),
    }
