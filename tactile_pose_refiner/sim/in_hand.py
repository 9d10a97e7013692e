"""In-hand motion: the object moves relative to the hand while the arm moves the hand.

A finger-driven turn about an axis through the object's centroid at a varying rate, a slip
along one direction, and a regrasp (one finger lifted for a while and closed again: contacts
lost and made). The fingers re-close on the object every frame, so they follow it and press it
by the generator's target depth; a step that would push the object into the palm is not taken
(the palm stops it). Ground truth stays exact: every frame's object pose and joints are known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tactile_pose_refiner.core.geometry import rotation_about, translation
from tactile_pose_refiner.core.scene.sdf import SdfGrid
from tactile_pose_refiner.sim.grasp import Grasp, GraspSynthesizer

MOTION_STREAM = 11  # the motion's own random stream beside the episode's (seed, index)


@dataclass
class InHandMotion:
    """One episode's drawn motion (hand base frame, SI units)."""

    axis: np.ndarray  # unit turning axis
    rate_rad_s: float  # mean turning rate
    slip_direction: np.ndarray  # unit
    slip_m_s: float
    regrasp_finger: str
    regrasp_steps: tuple[int, int]  # [first, last) steps with the finger lifted
    wobble_phase: float

    @classmethod
    def draw(cls, rng: np.random.Generator, config: dict, fingers: list[str], steps: int) -> InHandMotion:
        axis = rng.normal(size=3)
        slip = rng.normal(size=3)
        lifted = int(round(config["regrasp_s"] * config["frame_rate_hz"]))
        first = int(rng.integers(steps // 4, max(steps // 4 + 1, steps - lifted - steps // 4)))
        sign = rng.choice([-1.0, 1.0])
        return cls(
            axis / np.linalg.norm(axis),
            float(sign * np.radians(rng.uniform(*config["turn_rate_deg_s"]))),
            slip / np.linalg.norm(slip),
            float(rng.uniform(*config["slip_m_s"])),
            str(rng.choice([f for f in fingers if f != "thumb"])),
            (first, first + lifted),
            float(rng.uniform(0, 2 * np.pi)),
        )

    def record(self) -> dict:
        return {
            "turn_rate_deg_s": float(np.degrees(self.rate_rad_s)),
            "slip_mm_s": 1000 * self.slip_m_s,
            "regrasp_finger": self.regrasp_finger,
            "regrasp_steps": list(self.regrasp_steps),
        }

    def relative_step(self, step: int, dt: float, centre: np.ndarray) -> np.ndarray:
        """The object's motion in the hand base frame over one frame at `step` (its speed varies
        smoothly by +-50 %), about the object's current centroid `centre`."""
        speed = 1.0 + 0.5 * np.sin(2 * np.pi * step * dt / 2.0 + self.wobble_phase)
        turn = rotation_about(self.axis, self.rate_rad_s * speed * dt)
        return translation(self.slip_direction * self.slip_m_s * speed * dt) @ (
            translation(centre) @ turn @ translation(-centre)
        )


class GridDistance:
    """MeshDistance's query on the object's baked SDF: the per-frame re-closing makes ~80
    clearance queries a frame, ~13 ms each with the winding number and well under 1 ms here."""

    def __init__(self, sdf: SdfGrid) -> None:
        self.sdf = sdf

    def query(self, points: np.ndarray, max_distance: float) -> tuple[np.ndarray, None, None]:
        return np.minimum(self.sdf.sample(points), max_distance), None, None


class InHandGrasps:
    """Per frame grasps of a moving object: the object pose follows the motion unless the palm
    stops it or a finger would be pressed deeper than max_penetration_m, and the fingers re-close
    on it (the lifted one stays open)."""

    def __init__(self, synthesizer: GraspSynthesizer, config: dict) -> None:
        self.synthesizer = synthesizer
        self.palm_tolerance_m = float(config["palm_tolerance_m"])
        self.max_penetration_m = float(config["max_penetration_m"])
        self.reopen_rad = float(config["reopen_rad"])
        hand, fingers = synthesizer.hand, synthesizer.config["fingers"]
        finger_links = {link for finger in fingers.values() for link in finger["links"]}
        self.palm_links = {link: hand.links[link] for link in hand.links if link not in finger_links}

    def sequence(
        self, grasp: Grasp, motion: InHandMotion, steps: int, dt: float, centroid, sdf: SdfGrid
    ) -> list[Grasp]:
        """Grasps for steps 0..steps-1; step 0 is the given grasp."""
        distance = GridDistance(sdf)
        grasps = [grasp]
        T_base_obj, q = grasp.T_base_obj, grasp.q
        for step in range(1, steps):
            centre = T_base_obj[:3, :3] @ centroid + T_base_obj[:3, 3]
            moved = motion.relative_step(step, dt, centre) @ T_base_obj
            lifted = motion.regrasp_finger if motion.regrasp_steps[0] <= step < motion.regrasp_steps[1] else None
            reclosed = None
            if self._palm_clearance(grasp.q, moved, distance) > -self.palm_tolerance_m:
                reclosed = self._reclosed(q, moved, lifted, distance)
            if reclosed is None or reclosed.max_penetration_m > self.max_penetration_m:
                reclosed = self._reclosed(q, T_base_obj, lifted, distance)  # the hand stops the object
            grasps.append(reclosed)
            T_base_obj, q = reclosed.T_base_obj, reclosed.q
        return grasps

    def _palm_clearance(self, q, T_base_obj, distance) -> float:
        synthesizer = self.synthesizer
        return synthesizer.clearance(synthesizer.hand.link_poses(q), T_base_obj, distance, self.palm_links)

    def _reclosed(self, q_previous: np.ndarray, T_base_obj: np.ndarray, lifted: str | None, distance) -> Grasp:
        """Every finger opened by reopen_rad from the previous frame's joints (the lifted one fully
        open: the grasp's open start) and closed again on the object at T_base_obj."""
        synthesizer = self.synthesizer
        q = q_previous.copy()
        index, hand = synthesizer.index, synthesizer.hand
        touching = []
        for name, finger in synthesizer.config["fingers"].items():
            joints = [index[joint] for joint in finger["flex"]]
            fully_open = np.clip(0.0, hand.lower[joints], hand.upper[joints])
            q[joints] = fully_open if name == lifted else np.maximum(fully_open, q[joints] - self.reopen_rad)
            if name != lifted and synthesizer.close_finger(q, name, T_base_obj, distance):
                touching.append(name)
        penetration = -min(0.0, synthesizer.clearance(hand.link_poses(q), T_base_obj, distance, hand.links))
        return Grasp(q, T_base_obj, touching, penetration)
