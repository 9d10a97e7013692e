"""Physically consistent grasps: the object is placed in front of the palm and each finger
closes until it presses the object by a small target depth (no deep interpenetration)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.geometry import invert, transform_points
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.hand import HandModel
from tactile_pose_refiner.core.scene.objects import ObjectModel


class GraspError(RuntimeError):
    """No acceptable grasp was found for an object (the message says why)."""


@dataclass
class Grasp:
    q: np.ndarray  # (16,) joint positions, URDF order
    T_base_obj: np.ndarray  # (4, 4) object pose in the hand base frame
    fingers_in_contact: list[str]
    max_penetration_m: float  # deepest hand surface point inside the object


class GraspSynthesizer:
    def __init__(self, hand: HandModel, config: dict) -> None:
        self.hand = hand
        self.config = config
        self.points = hand.surface_points(config["surface_point_spacing_m"])
        self.index = {name: i for i, name in enumerate(hand.joint_names)}

    def synthesize(
        self,
        model: ObjectModel,
        distance: MeshDistance,
        rng: np.random.Generator,
        accept: Callable[[Grasp], bool] | None = None,
    ) -> Grasp:
        """A grasp with the thumb and enough fingers in contact that `accept` takes (e.g. one that
        can hold the object); else the one with most fingers in contact."""
        closing = self.config["closing"]
        best = None
        for _ in range(closing["max_attempts"]):
            grasp = self._attempt(model, distance, rng)
            if grasp is None:
                continue
            if (
                "thumb" in grasp.fingers_in_contact
                and len(grasp.fingers_in_contact) >= closing["min_fingers_in_contact"]
                and (accept is None or accept(grasp))
            ):
                return grasp
            if best is None or len(grasp.fingers_in_contact) > len(best.fingers_in_contact):
                best = grasp
        if best is not None and best.fingers_in_contact:
            return best
        raise GraspError(
            f"no grasp with finger contact found for {model.object_id} in {closing['max_attempts']} attempts"
        )

    # -- one attempt -------------------------------------------------------------------------
    def _attempt(self, model, distance, rng) -> Grasp | None:
        config = self.config
        q = self._open_hand(rng)
        rotation = np.eye(4)
        rotation[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
        centroid = model.geometry.centroid
        y = rng.uniform(*config["placement"]["y_range"])
        z = rng.uniform(*config["placement"]["z_range"])
        gap = rng.uniform(*config["placement"]["palm_gap_range"])

        def object_pose(x: float) -> np.ndarray:
            pose = rotation.copy()
            pose[:3, 3] = np.array([x, y, z]) - rotation[:3, :3] @ centroid
            return pose

        open_poses = self.hand.link_poses(q)
        near, far = 0.0, 0.02 + float(np.linalg.norm(model.geometry.extents))
        if self.clearance(open_poses, object_pose(far), distance, self.hand.links) < gap:
            return None
        for _ in range(24):  # push the object out along the palm normal until it clears by `gap`
            middle = 0.5 * (near + far)
            if self.clearance(open_poses, object_pose(middle), distance, self.hand.links) < gap:
                near = middle
            else:
                far = middle
        T_base_obj = object_pose(far)
        touching = [name for name in config["fingers"] if self.close_finger(q, name, T_base_obj, distance)]
        penetration = -min(0.0, self.clearance(self.hand.link_poses(q), T_base_obj, distance, self.hand.links))
        return Grasp(q, T_base_obj, touching, penetration)

    def _open_hand(self, rng) -> np.ndarray:
        q = np.clip(np.zeros(len(self.hand.joint_names)), self.hand.lower, self.hand.upper)
        for name, finger in self.config["fingers"].items():
            spread_range = self.config["thumb_opposition_range" if name == "thumb" else "spread_range"]
            q[self.index[finger["spread"]]] = rng.uniform(*spread_range)
        return q

    def close_finger(self, q, name, T_base_obj, distance) -> bool:
        """Close one finger in place (q is modified); True when it touches the object."""
        finger = self.config["fingers"][name]
        closing = self.config["closing"]
        joints = [self.index[j] for j in finger["flex"]]
        start, end = q[joints].copy(), self.hand.upper[joints]
        links = {link: self.hand.links[link] for link in finger["links"]}
        target = -closing["target_penetration_m"]

        def set_closing(t: float) -> float:
            q[joints] = start + t * (end - start)
            return self.clearance(self.hand.link_poses(q), T_base_obj, distance, links)

        previous = 0.0
        if set_closing(0.0) <= target:
            return True
        for t in np.arange(closing["step"], 1.0 + 1e-9, closing["step"]):
            if set_closing(t) <= target:
                low, high = previous, t
                for _ in range(10):
                    middle = 0.5 * (low + high)
                    low, high = (low, middle) if set_closing(middle) <= target else (middle, high)
                set_closing(high)
                return True
            previous = t
        set_closing(closing["no_contact_stop"])
        return False

    def clearance(self, poses, T_base_obj, distance, links) -> float:
        """Smallest signed distance of the given links' surface points to the object [m],
        with the hand's link poses T_base_link."""
        T_obj_base = invert(T_base_obj)
        points = np.concatenate([transform_points(T_obj_base @ poses[link], self.points[link][0]) for link in links])
        signed, _, _ = distance.query(points, max_distance=0.5)
        return float(signed.min())
