"""Episodes: a grasp held while the arm follows a smooth random trajectory in front of a fixed
camera; every step renders RGB, depth and mask, reads the skin and the joints."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tactile_pose_refiner.core.estimation.training import TRAINING_SEED_BASE
from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.geometry import invert, look_at, rotation_about, transform_points, translation
from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.assets import skin_layout
from tactile_pose_refiner.core.scene.camera import PinholeCamera, depth_to_millimetres
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.hand import HandModel
from tactile_pose_refiner.core.scene.objects import ObjectCatalog
from tactile_pose_refiner.core.scene.sdf import object_sdf
from tactile_pose_refiner.core.scene.skin import TactileModel, TactileReading, taxel_frames
from tactile_pose_refiner.sim.forces import Balance, holding_direction, object_motion, readings
from tactile_pose_refiner.sim.grasp import Grasp, GraspSynthesizer
from tactile_pose_refiner.sim.in_hand import MOTION_STREAM, InHandGrasps, InHandMotion
from tactile_pose_refiner.sim.realism import STREAM, EpisodeDraw, SensorErrors
from tactile_pose_refiner.sim.render import RaycastRenderer

# Joint names as the vendor ROS 2 driver publishes them (ah_joint00..33).
DRIVER_JOINT_PREFIX = "ah_"


@dataclass
class EpisodeInfo:
    object_id: str
    grasp: Grasp
    occlusion: list[float]  # per frame share of the object silhouette hidden by the hand
    realism: dict | None = None  # the sensor errors drawn for the episode (sim/realism.py)
    taxels_in_contact: list[int] | None = None  # per frame, taxels over gamma as read
    motion: dict | None = None  # the in-hand motion drawn for the episode (sim/in_hand.py)
    dynamics: dict | None = None  # balanced forces: the true mass, gravity, how well they balance


class EpisodeGenerator:
    """realism: a preset of config/realism.yaml (clean: exact hand, the generator's own noise);
    motion: "arm" (the object rests in the hand; only the arm moves) or "in_hand" (it also turns,
    slips and is regrasped in the hand); forces: "penetration" (each taxel reads how far the object
    presses into it) or "balanced" (those forces corrected to carry the object's weight and
    accelerations, sim/forces.py; the readings are calibrated: force_scale newtons per unit);
    hand: a hand of the caller's own (default: config/hand.yaml's), its skin placed on it."""

    MOTIONS = ("arm", "in_hand")
    FORCES = ("penetration", "balanced")

    def __init__(
        self, realism: str = "clean", motion: str = "arm", forces: str = "penetration", hand: HandModel | None = None
    ) -> None:
        if motion not in self.MOTIONS:
            raise ValueError(f"unknown motion {motion!r}; known: {', '.join(self.MOTIONS)}")
        if forces not in self.FORCES:
            raise ValueError(f"unknown force model {forces!r}; known: {', '.join(self.FORCES)}")
        self.motion, self.force_model = motion, forces
        self.config = load_config("generator")
        self.camera_config = load_config("camera")
        self.hand = hand or HandModel.from_config()
        self.catalog = ObjectCatalog.from_config()
        self.camera = PinholeCamera.from_config()
        self.skin = skin_layout(self.hand)
        self.tactile = TactileModel.from_config()
        self.renderer = RaycastRenderer(
            self.camera, self.camera_config["background_rgb"], self.camera_config["hand_rgb"]
        )
        self.grasps = GraspSynthesizer(self.hand, self.config)
        self.errors = SensorErrors(realism)
        self.taxel_neighbours = self.errors.taxel_neighbours(self.skin)
        self.in_hand = InHandGrasps(self.grasps, self.config["in_hand"])
        self._held: tuple[Grasp, np.ndarray | None] | None = None  # the last grasp's holding direction

    def episode(self, object_id: str, steps: int, seed: int, index: int = 0) -> tuple[EpisodeInfo, Iterator[Frame]]:
        """Grasp now; frames lazily (rendering is the slow part)."""
        return self._episode(object_id, None, steps, seed, index)

    def replay(
        self, object_id: str, grasp: Grasp, steps: int, seed: int, index: int = 0
    ) -> tuple[EpisodeInfo, Iterator[Frame]]:
        """Frames of a given grasp (e.g. a stored one), skipping the grasp search."""
        return self._episode(object_id, grasp, steps, seed, index)

    def _episode(
        self, object_id: str, grasp: Grasp | None, steps: int, seed: int, index: int
    ) -> tuple[EpisodeInfo, Iterator[Frame]]:
        rng = np.random.default_rng([seed, index])
        model = self.catalog.load(object_id)
        distance = MeshDistance(model.geometry.vertices, model.geometry.faces)
        if grasp is None:  # the search draws from rng first, so episodes stay seed-identical
            holds = None
            if self.force_model == "balanced" and self.config["forces"]["rest_orientation"] == "holding":
                com = RigidBody.from_mesh(model.geometry, model.mass_kg, model.com_m, model.inertia_kg_m2).com
                holds = lambda grasp: self._holding_direction(grasp, com, distance) is not None  # noqa: E731
            grasp = self.grasps.synthesize(model, distance, rng, accept=holds)
        info = EpisodeInfo(object_id, grasp, [], taxels_in_contact=[])
        # the errors' own stream (per object too): the grasp and trajectory stay those of the clean episode
        errors_rng = np.random.default_rng([seed, index, STREAM, zlib.crc32(object_id.encode())])
        draw = self.errors.draw(errors_rng, len(self.hand.joint_names), len(self.skin.ids))
        if not self.errors.clean:
            info.realism = {"preset": self.errors.preset, **draw.record()}
        grasps = [grasp] * steps
        if self.motion == "in_hand":
            grasps = self._moving(
                info, model, steps, np.random.default_rng([seed, index, MOTION_STREAM, zlib.crc32(object_id.encode())])
            )
        return info, self._frames(info, grasps, model, distance, steps, rng, index, draw, errors_rng)

    def _moving(self, info, model, steps, motion_rng) -> list[Grasp]:
        """Per step grasps of an object moving in the hand (its own random stream: the grasp,
        trajectory and sensor errors stay those of the episode without motion)."""
        config = {**self.config["in_hand"], "frame_rate_hz": self.config["trajectory"]["frame_rate_hz"]}
        motion = InHandMotion.draw(motion_rng, config, list(self.config["fingers"]), steps)
        dt = 1.0 / config["frame_rate_hz"]
        grasps = self.in_hand.sequence(
            info.grasp, motion, steps, dt, model.geometry.centroid, object_sdf(model.geometry)
        )
        info.motion = {**motion.record(), "max_penetration_mm": 1000 * max(g.max_penetration_m for g in grasps)}
        return grasps

    def _frames(
        self, info, grasps, model, distance, steps, rng, index, draw: EpisodeDraw, errors_rng
    ) -> Iterator[Frame]:
        grasp = info.grasp
        centre = transform_points(grasp.T_base_obj, model.geometry.centroid[None])[0]
        trajectory = self._trajectory(centre, steps, rng)
        if view := self.errors.group("view"):
            trajectory = self._occluding_view(model, grasp, centre, steps, trajectory, view, errors_rng)
        timing = self.config["trajectory"]
        start_ns = int((timing["start_time_s"] + 1000 * index) * 1e9)
        names = [DRIVER_JOINT_PREFIX + name for name in self.hand.joint_names]
        exact = self.errors.clean
        balance = self._balance(info, model, distance, grasps, trajectory) if self.force_model == "balanced" else None
        contact, contact_of, taxels = None, None, None
        for step, T_cam_base in enumerate(trajectory):
            grasp = grasps[step]
            if contact_of is not grasp:  # computed once while the object rests in the hand
                link_poses = self.hand.link_poses(grasp.q)
                contact, contact_of = self._taxel_contact(link_poses, grasp.T_base_obj, distance), grasp
                taxels = taxel_frames(self.skin, link_poses, invert(grasp.T_base_obj)) if balance else None
            signed, object_normals, taxel_normals = contact
            T_cam_obj = T_cam_base @ grasp.T_base_obj
            hand_meshes = list(self.hand.meshes(grasp.q, T_cam_base).values())
            render = self.renderer.render(model, T_cam_obj, hand_meshes)
            info.occlusion.append(render.occlusion)
            stamp_ns = start_ns + int(round(step * 1e9 / timing["frame_rate_hz"]))
            if balance is None:
                forces = self._forces(signed, object_normals, taxel_normals, rng, draw, errors_rng)
            else:
                forces = self._balanced(balance, step, signed, taxels, rng, draw, errors_rng)
            info.taxels_in_contact.append(
                int((np.linalg.norm(forces, axis=1) > self.tactile.contact_threshold_units).sum())
            )
            rgb = self._rgb(render.rgb, rng, draw, errors_rng)  # draw order kept: clean episodes stay seed-identical
            depth_mm = self._depth(render.depth_m, rng, draw, errors_rng)
            q = grasp.q + rng.normal(0, self.config["joint_noise_std_rad"], grasp.q.shape)
            yield Frame(
                stamp_ns=stamp_ns,
                object_id=info.object_id,
                camera=self.camera,
                rgb=rgb,
                depth_mm=depth_mm,
                mask=(self.errors.mask(render.object_mask, render.hand_mask, draw, errors_rng) * 255).astype(np.uint8),
                joint_names=names,
                joint_positions=self.errors.joints(q, draw, errors_rng),
                tactile=TactileReading(
                    self.skin.links,
                    self.skin.ids,
                    self.skin.positions,
                    forces,
                    balance.newtons_per_unit if balance else 0.0,
                    stamp_ns,
                ),
                T_cam_base=self.errors.base_pose(T_cam_base, draw),
                T_cam_obj=T_cam_obj,
                joint_positions_true=None if exact else grasp.q,
                T_cam_base_true=None if exact else T_cam_base,
                realism=info.realism,
                dynamics=info.dynamics,
            )
        if balance is not None:
            info.dynamics.update(
                worst_balance_residual_n=balance.worst_residual_n,
                frames_outside_friction_cones=balance.frames_outside_cones,
            )

    def _balance(self, info: EpisodeInfo, model, distance, grasps, trajectory) -> Balance:
        """The episode's true object motion and mass properties; gravity from the hand's first pose (palm up)."""
        config = self.config["forces"]
        T_cam_obj = [T_cam_base @ grasp.T_base_obj for T_cam_base, grasp in zip(trajectory, grasps)]
        body = RigidBody.from_mesh(model.geometry, model.mass_kg, model.com_m, model.inertia_kg_m2)
        dt = 1.0 / self.config["trajectory"]["frame_rate_hz"]
        balance = Balance(
            body,
            T_cam_obj,
            object_motion(T_cam_obj, body.com, dt),
            trajectory[0][:3, :3] @ self._gravity_at_rest(grasps[0], body.com, distance),
            float(load_config("tactile")["newtons_per_unit"]),
            float(config["friction_mu"]),
            float(config["squeeze_share"]),
        )
        touch = self.errors.group("touch") or {}  # the skin's characterisation travels with its calibration
        info.dynamics = {
            **balance.record(),
            "crosstalk_share": float(touch.get("crosstalk", 0.0)),
            "crosstalk_radius_m": float(touch.get("crosstalk_radius", 0.0)),
        }
        return balance

    def _gravity_at_rest(self, grasp: Grasp, com: np.ndarray, distance: MeshDistance) -> np.ndarray:
        """Gravity in the hand base frame at the trajectory's rest pose (config forces.rest_orientation)."""
        config = self.config["forces"]
        fixed = np.asarray(config["gravity_hand_rest_m_s2"], dtype=np.float64)
        if config["rest_orientation"] == "fixed":
            return fixed
        direction = self._holding_direction(grasp, com, distance)
        return fixed if direction is None else direction * float(np.linalg.norm(fixed))

    def _holding_direction(self, grasp: Grasp, com: np.ndarray, distance: MeshDistance) -> np.ndarray | None:
        """The direction of gravity (hand base frame) the grasp's touching taxels hold best
        (sim/forces.holding_direction); None when they hold in none."""
        if self._held is not None and self._held[0] is grasp:
            return self._held[1]
        link_poses = self.hand.link_poses(grasp.q)
        signed, _, _ = self._taxel_contact(link_poses, grasp.T_base_obj, distance)
        positions, normals, _, _ = taxel_frames(self.skin, link_poses, invert(grasp.T_base_obj))
        touching = signed < self.tactile.contact_margin_m
        tilt = float(np.sqrt(3.0)) * self.config["trajectory"]["rotation_amplitude_rad"]  # all three axes at once
        mu = self.config["forces"]["friction_mu"]
        direction = holding_direction(positions[touching], normals[touching], com, mu, tilt)
        direction = None if direction is None else grasp.T_base_obj[:3, :3] @ direction
        self._held = (grasp, direction)
        return direction

    def _balanced(self, balance: Balance, step: int, signed, taxels, rng, draw, errors_rng) -> np.ndarray:
        """Readings [units] of forces that carry the object: the skin's squeeze, balanced (sim/forces.py)."""
        positions, normals, x_axes, y_axes = taxels
        model = self.tactile
        squeeze = np.clip(model.stiffness_units_per_m * (model.contact_margin_m - signed), 0.0, model.max_units)
        touching = squeeze > 0
        on_object = balance.contact_forces(
            step, squeeze[touching] * balance.newtons_per_unit, positions[touching], normals[touching]
        )
        exact = np.zeros((len(signed), 3))
        exact[touching] = readings(on_object, normals[touching], x_axes[touching], y_axes[touching])
        exact /= balance.newtons_per_unit
        if self.errors.group("touch") is None:  # the generator's own noise, the same draws as penetration forces
            return np.clip(
                exact + rng.normal(0.0, model.noise_std_units, exact.shape), -model.max_units, model.max_units
            )
        return self.errors.touch(exact, self.taxel_neighbours, draw, errors_rng, model.max_units)

    def _forces(self, signed, object_normals, taxel_normals, rng, draw, errors_rng) -> np.ndarray:
        if self.errors.group("touch") is None:
            return self.tactile.forces(signed, object_normals, taxel_normals, rng)
        exact = self.tactile.forces(signed, object_normals, taxel_normals)
        return self.errors.touch(exact, self.taxel_neighbours, draw, errors_rng, self.tactile.max_units)

    def _rgb(self, rgb, rng, draw, errors_rng) -> np.ndarray:
        damaged = self.errors.rgb(rgb, draw, errors_rng)
        return self._noisy_rgb(rgb, rng) if damaged is None else damaged

    def _depth(self, depth_m, rng, draw, errors_rng) -> np.ndarray:
        if self.errors.group("depth") is None:
            return self._noisy_depth(depth_m, rng)
        config = self.camera_config
        damaged = self.errors.depth(depth_m, self.camera.fx, draw, errors_rng)
        valid = (damaged > config["depth_min_m"]) & (damaged < config["depth_max_m"])
        return depth_to_millimetres(np.where(valid, damaged, 0.0))

    def _occluding_view(self, model, grasp, centre, steps, trajectory, view: dict, rng) -> list[np.ndarray]:
        """A trajectory whose first frame hides view['occlusion_range'] of the object behind the
        fingers, searched over camera directions in a wider cone (else the most occluded one)."""
        low, high = view["occlusion_range"]
        best, best_share = trajectory, -1.0
        for attempt in range(int(view["attempts"])):
            if attempt:
                trajectory = self._trajectory(centre, steps, rng, view["view_cone_deg"])
            T_cam_base = trajectory[0]
            render = self.renderer.render(
                model, T_cam_base @ grasp.T_base_obj, list(self.hand.meshes(grasp.q, T_cam_base).values())
            )
            share = render.occlusion
            if low <= share <= high:
                return trajectory
            if share <= high and share > best_share:
                best, best_share = trajectory, share
        return best

    def _taxel_contact(self, link_poses, T_base_obj, distance):
        """Signed distance of each taxel to the object and the object/taxel normals (object frame)."""
        T_obj_base = invert(T_base_obj)
        positions, taxel_normals = self.skin.posed(link_poses, T_obj_base)
        signed, _, object_normals = distance.query(positions, max_distance=0.5)
        return signed, object_normals, taxel_normals

    def _trajectory(self, centre: np.ndarray, steps: int, rng, view_cone_deg: float | None = None) -> list[np.ndarray]:
        """Fixed camera; the hand base moves smoothly around its start pose (sums of sines)."""
        config = self.config["trajectory"]
        cone = np.radians(view_cone_deg or config["view_cone_deg"])
        direction = rotation_about(rng.normal(size=3) * [0, 1, 1], rng.uniform(0, cone))[:3, :3] @ [1.0, 0, 0]
        eye = centre + rng.uniform(*config["camera_distance_range"]) * direction
        T_base_cam = look_at(eye, centre, up=(0.0, 0.0, -1.0))
        T_cam_base0 = invert(T_base_cam)
        phases = rng.uniform(0, 2 * np.pi, (6, 2))
        rates = rng.uniform(0.5, 1.5, (6, 2)) * 2 * np.pi / max(steps, 1)
        poses = []
        for k in range(steps):
            wave = (np.sin(rates[:, 0] * k + phases[:, 0]) + np.sin(rates[:, 1] * k + phases[:, 1])) / 2
            motion = translation(config["translation_amplitude_m"] * wave[:3])
            rotation = wave[3:] * config["rotation_amplitude_rad"]
            angle = float(np.linalg.norm(rotation))
            if angle > 0:  # rotate about the grasp centre
                motion = motion @ translation(centre) @ rotation_about(rotation, angle) @ translation(-centre)
            poses.append(T_cam_base0 @ motion)
        return poses

    def _noisy_rgb(self, rgb, rng) -> np.ndarray:
        noise = rng.normal(0, self.camera_config["rgb_noise_std"], rgb.shape)
        return np.clip(np.round(rgb + noise), 0, 255).astype(np.uint8)

    def _noisy_depth(self, depth_m, rng) -> np.ndarray:
        config = self.camera_config
        noisy = depth_m + rng.normal(0, 1, depth_m.shape) * config["depth_noise_std_at_1m"] * depth_m**2
        valid = (depth_m > config["depth_min_m"]) & (depth_m < config["depth_max_m"])
        return depth_to_millimetres(np.where(valid, noisy, 0.0))


def training_frames(object_id: str, episodes: int, steps: int) -> Iterator[tuple[int, Frame]]:
    """(episode index, frame) of the learned estimator's training episodes (seeds 1000 + k)."""
    generator = EpisodeGenerator()
    for index in range(episodes):
        _, frames = generator.episode(object_id, steps, TRAINING_SEED_BASE + index, index)
        for frame in frames:
            yield index, frame
