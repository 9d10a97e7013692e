"""Tracking: the object's pose on every frame from the last one, at camera rate.

Per frame: predict from the last pose (the hand's measured motion, plus the object's own motion
in the hand frame, constant velocity with decay), then a few Levenberg-Marquardt iterations on
stacked residuals (core/tracking/solver.py): depth points on the object surface, taxels in
contact at the gap their force implies, hand points kept out of the object, and a prior on the
deviation from the prediction. A confidence check (depth inliers, their rms, the step bound)
labels each pose `tracking` or `lost`; a caller re-initialises a lost track with `start`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from tactile_pose_refiner.core.device import resolve_device
from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.geometry import invert
from tactile_pose_refiner.core.gradients.tactile import contact_gaps
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.assets import HandAssets, ObjectAssets
from tactile_pose_refiner.core.scene.camera import depth_from_millimetres
from tactile_pose_refiner.core.scene.distance import NearestPoints
from tactile_pose_refiner.core.scene.hand import PosedHand
from tactile_pose_refiner.core.scene.kinematics import HandInputError
from tactile_pose_refiner.core.scene.skin import contact_positions
from tactile_pose_refiner.core.tracking.solver import PoseSolver, ResidualBlock, SdfField, SolveResult, SolverSettings
from tactile_pose_refiner.core.tracking.texture import TextureTurn

MM = 1e-3


@dataclass
class TrackResult:
    T: np.ndarray  # (4, 4) T_cam_obj
    covariance: np.ndarray  # (6, 6) ROS convention (x, y, z, rot x, rot y, rot z), camera frame
    status: str  # "tracking", "reinitialised", "lost" (+ "; degraded: ..." where an input is missing)
    ms: float
    iterations: int
    T_predicted: np.ndarray
    stats: dict = field(default_factory=dict)  # per residual block: points, inliers, rms_mm
    turn_deg: float = 0.0  # the texture turn about a symmetric object's axis
    problems: list[str] = field(default_factory=list)  # what the confidence check found (a poor fit)

    @property
    def lost(self) -> bool:
        return self.status.startswith("lost")


@dataclass
class FrameEvidence:
    """A frame's measurements in the camera frame, ready for the solver."""

    depth: np.ndarray  # (N, 3) object depth points, hand pixels removed
    contacts: np.ndarray  # (K, 3) taxels in contact
    gaps: np.ndarray  # (K,) signed distance each contact's force implies [m]
    saturated: np.ndarray  # (K,) bool
    hand_points: np.ndarray  # (M, 3) hand surface points near the object
    T_cam_base: np.ndarray
    problems: list[str] = field(default_factory=list)


class Tracker:
    """One object's tracker; `start(frame, T)` (re)initialises, `step(frame)` tracks."""

    def __init__(self, object_assets: ObjectAssets, hand: HandAssets, config: dict | None = None) -> None:
        self.config = config or load_config("tracker")
        self.device = resolve_device(str(self.config["device"]))
        self.object = object_assets
        self.hand = hand
        field_ = SdfField(object_assets.sdf, self.device, torch.float32 if self.device == "cuda" else torch.float64)
        self.solver = PoseSolver(field_, object_assets.body.com, object_assets.body.radius)
        self.settings = SolverSettings.from_config(self.config["solver"])
        spacing = float(self.config["penetration"]["point_spacing_mm"]) * MM
        self.link_points = {link: points for link, (points, _) in hand.model.surface_points(spacing).items()}
        self.link_spheres = {  # (centre, radius) of each link's points, link frame
            link: (points.mean(axis=0), float(np.linalg.norm(points - points.mean(axis=0), axis=1).max()))
            for link, points in self.link_points.items()
        }
        self.texture = TextureTurn(
            object_assets.model, object_assets.body.inertia, object_assets.body.com, self.config["texture_turn"]
        )
        self.reset()

    def reset(self) -> None:
        """Forget the track: the next frame needs `start`."""
        self.T_base_obj: np.ndarray | None = None
        self.velocity = np.zeros(6)  # the object's twist per second in the hand (about its centroid)
        self.stamp_ns: int | None = None
        self.lost_frames = 0
        self.last_T = np.eye(4)  # the last pose output (camera frame)

    @property
    def started(self) -> bool:
        return self.T_base_obj is not None

    def start(
        self,
        frame: Frame,
        T_cam_obj: np.ndarray,
        iterations: int | None = None,
        hypotheses: int | None = None,
        posed: PosedHand | None = None,
    ) -> TrackResult:
        """(Re)initialise from a pose (an estimate, a full refinement): a longer solve without
        the motion prior, from the pose and hypotheses - 1 others drawn about it (config
        `start`); the one that fits depth, touch and the hand best is kept. posed: the frame's
        hand where it was corrected (default: as its joints and base pose place it)."""
        self.reset()
        config = self.config["start"]
        settings = SolverSettings(**{**self.settings.__dict__, "prior_mm": np.inf, "prior_deg": np.inf})
        settings.iterations = int(iterations or config["iterations"])
        T = np.asarray(T_cam_obj, dtype=np.float64)
        alternatives = self._hypotheses(T, int(hypotheses or config["hypotheses"]) - 1)
        return self._update(frame, T, settings, None, "reinitialised", alternatives, posed)

    def recovery_due(self) -> bool:
        """A lost track tries to restart itself (config `recovery`) every `every_frames` lost frames."""
        config = self.config["recovery"]
        every = max(1, int(config["every_frames"]))
        return (
            int(config["hypotheses"]) > 0
            and self.started
            and self.lost_frames >= every
            and (self.lost_frames % every == 0)
        )

    def recover(self, frame: Frame) -> TrackResult:
        """A lost track restarted without an outside estimate: a start from the last good pose
        carried by the hand's motion, with hypotheses about it (config `recovery`); kept where it
        fits depth and touch, else the track stays lost as it was."""
        kept = (self.T_base_obj, self.velocity.copy(), self.stamp_ns, self.lost_frames, self.last_T)
        T = np.asarray(frame.T_cam_base, dtype=np.float64) @ self.T_base_obj
        result = self.start(frame, T, hypotheses=int(self.config["recovery"]["hypotheses"]))
        problems = self._recovery_problems(result)
        if not problems:
            result.status = result.status.replace("reinitialised", "reinitialised (recovered by the track)", 1)
            return result
        self.T_base_obj, self.velocity, self.stamp_ns, self.lost_frames, self.last_T = kept
        self.lost_frames += 1
        result.status = "lost (recovery not kept: " + ", ".join(problems) + ")"
        result.T = T  # the last good pose, carried by the hand
        return result

    def _recovery_problems(self, result: TrackResult) -> list[str]:
        """Why a self-recovery is not trusted: a poor fit, or one stricter than tracking's
        check finds (config `recovery`): depth inliers and rms, and the skin in agreement."""
        if not np.isfinite(result.T).all():
            return ["non-finite pose"]
        limits = self.config["recovery"]
        problems = list(result.problems)
        depth = result.stats.get("depth", {"points": 0, "inliers": 0, "rms_mm": np.inf})
        share = depth["inliers"] / max(depth["points"], 1)
        if share < float(limits["min_depth_inliers"]) or depth["rms_mm"] > float(limits["max_depth_rms_mm"]):
            problems.append(f"depth {share:.0%} inliers, rms {depth['rms_mm']:.1f} mm")
        touch = result.stats.get("touch", {"points": 0, "inliers": 0})
        if touch["points"] < int(limits["min_touch_points"]) or touch["inliers"] < touch["points"]:
            problems.append(f"touch {touch['inliers']}/{touch['points']} contacts agree")
        return problems

    def _hypotheses(self, T: np.ndarray, count: int) -> list[np.ndarray]:
        """count poses about T: rotations about the centre of mass and shifts drawn with the
        configured spread, seeded (the same frame starts the same way)."""
        config = self.config["start"]
        rng = np.random.default_rng(int(config["seed"]))
        poses = []
        for _ in range(max(0, count)):
            twist = np.r_[
                rng.normal(0, np.radians(config["spread_deg"]), 3), rng.normal(0, config["spread_mm"] * MM, 3)
            ]
            poses.append(self.solver.moved(T, twist))
        return poses

    def step(self, frame: Frame) -> TrackResult:
        if not self.started:
            raise RuntimeError("Tracker.step before start: initialise the track with a pose first")
        dt = (frame.stamp_ns - self.stamp_ns) * 1e-9 if self.stamp_ns is not None else 0.0
        if not 0.0 < dt <= float(self.config["motion"]["max_gap_s"]):  # a time jump or a long gap: no velocity
            dt = 0.0
        T_base_obj = self.solver.moved(self.T_base_obj, self.velocity * dt)
        predicted = np.asarray(frame.T_cam_base, dtype=np.float64) @ T_base_obj
        if not np.isfinite(predicted).all():
            return self._unusable(time.perf_counter(), "lost; degraded: hand base pose not finite")
        return self._update(frame, predicted, self.settings, predicted, "tracking")

    def _update(self, frame, predicted, settings, prior, status, alternatives=(), posed=None) -> TrackResult:
        started = time.perf_counter()
        try:
            evidence = self.evidence(frame, predicted, posed)
        except HandInputError as exc:
            return self._unusable(started, f"lost; degraded: joint states unusable: {exc}", predicted)
        solved = self._best_fit(
            [
                self.solver.solve(T, self.blocks(evidence, T), settings, prior, self.texture.axis)
                for T in [predicted, *alternatives]
            ],
            predicted,
        )
        solved.T, turn_deg = self.texture.turn(solved.T, frame, start=prior is None)
        problems = self._confidence(solved.block_stats, solved.bounded, len(evidence.depth))
        lost = (bool(problems) and status != "reinitialised") or not np.isfinite(solved.T).all()
        T = solved.T if np.isfinite(solved.T).all() else predicted
        if lost:
            self.lost_frames += 1
            status = "lost (" + ", ".join(problems or ["non-finite pose"]) + ")"
        else:
            self.lost_frames = 0
            if problems:  # a start that does not fit well: said, but tracked
                status += " (" + ", ".join(problems) + ")"
        if evidence.problems:
            status += "; degraded: " + ", ".join(evidence.problems)
        self._remember(T, evidence.T_cam_base, frame.stamp_ns, keep_velocity=not lost)
        covariance = self.solver.covariance_ros(T, solved.information)
        ms = (time.perf_counter() - started) * 1000
        return TrackResult(
            T, covariance, status, ms, solved.iterations, predicted, solved.block_stats, turn_deg, problems
        )

    def _best_fit(self, results: list, start: np.ndarray):
        """The solve whose truncated cost is lowest; within `tie` of it, the one nearest the start
        (a can upside down, a box turned half round fit depth and touch alike: the start decides)."""
        if self.texture.active:  # a can upside down fits alike: keep the start's end up
            axis = start[:3, :3] @ self.texture.axis
            results = [r for r in results if (r.T[:3, :3] @ self.texture.axis) @ axis > 0] or results[:1]
        scores = [sum(stats["score"] for stats in result.block_stats.values()) for result in results]
        tied = [r for r, score in zip(results, scores) if score <= min(scores) * (1.0 + self.config["start"]["tie"])]
        twists = [self.solver.twist_between(start, result.T) for result in tied]
        return tied[
            int(np.argmin([self.solver.radius * np.linalg.norm(t[:3]) + np.linalg.norm(t[3:]) for t in twists]))
        ]

    def _unusable(self, started, status, predicted=None) -> TrackResult:
        """A frame nothing can be measured on: the prediction (or, without a usable hand pose,
        the last pose) labelled lost, with a covariance that says nothing is known."""
        self.lost_frames += 1
        T = predicted if predicted is not None and np.isfinite(predicted).all() else self.last_T
        covariance = np.diag([1.0] * 3 + [np.pi**2] * 3)
        return TrackResult(T, covariance, status, (time.perf_counter() - started) * 1000, 0, T)

    def _remember(self, T_cam_obj: np.ndarray, T_cam_base: np.ndarray, stamp_ns: int, keep_velocity: bool) -> None:
        """A tracked pose updates the velocity (decayed: a turn slows as often as it goes on);
        a lost one clears it and keeps the last good pose in the hand."""
        self.last_T = T_cam_obj
        T_base_obj = invert(T_cam_base) @ T_cam_obj
        if not keep_velocity:
            self.velocity = np.zeros(6)
            if self.T_base_obj is None:
                self.T_base_obj = T_base_obj
            return
        dt = (stamp_ns - self.stamp_ns) * 1e-9 if self.stamp_ns is not None else 0.0
        if self.T_base_obj is not None and 0.0 < dt <= float(self.config["motion"]["max_gap_s"]):
            twist = self.solver.twist_between(self.T_base_obj, T_base_obj) / dt
            if self.texture.active:  # the turn about the axis is the texture's per frame: noisy, not carried
                twist[:3] -= (twist[:3] @ self.texture.axis) * self.texture.axis
            motion = self.config["motion"]
            jumped = (  # faster than fingers move an object: a jump (a correction, a reset), not a velocity
                np.linalg.norm(twist[3:]) > motion["max_speed_m_s"]
                or np.degrees(np.linalg.norm(twist[:3])) > motion["max_turn_deg_s"]
            )
            self.velocity = np.zeros(6) if jumped else float(motion["velocity_decay"]) * twist
        self.T_base_obj, self.stamp_ns = T_base_obj, stamp_ns

    def _confidence(self, stats: dict, bounded: bool, depth_points: int) -> list[str]:
        limits = self.config["confidence"]
        depth = stats.get("depth", {"points": 0, "inliers": 0, "rms_mm": 0.0})
        problems = []
        if depth_points >= int(limits["min_depth_points"]):
            share = depth["inliers"] / max(depth["points"], 1)
            if share < float(limits["min_depth_inliers"]):
                problems.append(f"depth inliers {share:.0%}")
            if depth["rms_mm"] > float(limits["max_depth_rms_mm"]):
                problems.append(f"depth rms {depth['rms_mm']:.1f} mm")
        touch = stats.get("touch", {"points": 0, "inliers": 0})
        if touch["points"] >= int(limits["min_touch_points"]):
            share = touch["inliers"] / touch["points"]
            if share < float(limits["min_touch_inliers"]):  # the skin feels the object elsewhere
                problems.append(f"touch inliers {share:.0%}")
        if bounded:
            problems.append("step at its bound")
        return problems

    # --- the frame's evidence -------------------------------------------------------------
    def evidence(self, frame: Frame, T_cam_obj: np.ndarray, posed: PosedHand | None = None) -> FrameEvidence:
        """Depth points, contacts and hand points of the frame (camera frame); the hand as the
        frame's joints and base pose place it, or as `posed` (a corrected one)."""
        problems = []
        if posed is None:
            q = self.hand.model.joint_vector(frame.joint_names, frame.joint_positions)
            T_cam_base = np.asarray(frame.T_cam_base, dtype=np.float64)
            link_poses = self.hand.model.kinematics.link_poses(q)
        else:
            T_cam_base, link_poses = posed.T_frame_base, posed.link_poses
        hand_points = self._hand_points_around(T_cam_base, link_poses, T_cam_obj)
        depth = self._depth_points(frame, hand_points)
        if len(depth) < int(self.config["confidence"]["min_depth_points"]):
            problems.append(f"{len(depth)} depth points")
        contacts, gaps, saturated = self._contacts(frame, link_poses, T_cam_base)
        if len(contacts) == 0:
            problems.append("no touch")
        return FrameEvidence(depth, contacts, gaps, saturated, hand_points, T_cam_base, problems)

    def touch_solve(
        self, frame: Frame, T_initial: np.ndarray, posed: PosedHand, sigma_mm: float, sigma_deg: float, iterations: int
    ) -> SolveResult:
        """No camera: touch and the hand's contact solved from T_initial with it as the prior
        (sigmas of its error): what one fingertip's patch or a can's turn cannot show stays as it
        started, instead of wandering. posed: the frame's hand (a corrected one)."""
        evidence = self.evidence(frame, T_initial, posed)
        blocks = [block for block in self.blocks(evidence, T_initial) if block.name != "depth"]
        settings = SolverSettings(
            **{**self.settings.__dict__, "prior_mm": sigma_mm, "prior_deg": sigma_deg, "iterations": iterations}
        )
        return self.solver.solve(T_initial, blocks, settings, T_initial, self.texture.axis)

    def _hand_points_around(self, T_cam_base, link_poses, T_cam_obj) -> np.ndarray:
        """The surface points (camera frame) of the hand links near enough to the object at
        T_cam_obj to touch it or to be mistaken for it in the mask: a link whose bounding sphere
        stays farther than the penetration band or the depth exclusion, plus reach_mm for a
        prediction that is off, is left out whole (one SDF sample per link)."""
        config = self.config
        reach = MM * (
            max(config["penetration"]["band_mm"], config["depth"]["hand_exclusion_mm"]) + config["motion"]["reach_mm"]
        )
        links = list(self.link_points)
        posed = {link: T_cam_base @ link_poses[link] for link in links}
        centres = np.array([posed[link][:3, :3] @ self.link_spheres[link][0] + posed[link][:3, 3] for link in links])
        local = (centres - T_cam_obj[:3, 3]) @ T_cam_obj[:3, :3]
        clearance = self.object.sdf.sample(local) - np.array([self.link_spheres[link][1] for link in links])
        near = [link for link, gap in zip(links, clearance) if gap < reach]
        if not near:
            return np.zeros((0, 3))
        return np.concatenate([self.link_points[link] @ posed[link][:3, :3].T + posed[link][:3, 3] for link in near])

    def _depth_points(self, frame: Frame, hand_points: np.ndarray) -> np.ndarray:
        config = self.config["depth"]
        if frame.depth_mm is None or frame.mask is None:
            return np.zeros((0, 3))
        v, u = np.nonzero((frame.depth_mm > 0) & (frame.mask > 0))  # the object's depth pixels
        if len(v) > int(config["max_points"]):  # drawn before back-projecting: ~20000 pixels, 800 used
            rng = np.random.default_rng(frame.stamp_ns % 2**32)  # the same frame, the same points
            chosen = rng.choice(len(v), int(config["max_points"]), replace=False)
            v, u = v[chosen], u[chosen]
        points = frame.camera.backproject_pixels(u, v, depth_from_millimetres(frame.depth_mm[v, u]))
        if len(points):  # a mask a few pixels wide takes in the fingers: their pixels are no object
            exclusion = float(config["hand_exclusion_mm"]) * MM
            low, high = points.min(axis=0) - exclusion, points.max(axis=0) + exclusion
            # only hand points in the depth points' box can be that close: ~500 of ~13000, 3x faster
            nearby = hand_points[((hand_points >= low) & (hand_points <= high)).all(axis=1)]
            distance, _ = NearestPoints(nearby).query(points, exclusion)
            points = points[~np.isfinite(distance) | (distance > exclusion)]
        return points

    def _contacts(self, frame: Frame, link_poses, T_cam_base):
        threshold = self.hand.contact_threshold
        if frame.tactile is None or len(frame.tactile) == 0:
            return np.zeros((0, 3)), np.zeros(0), np.zeros(0, dtype=bool)
        if self.hand.skin is None:
            positions = contact_positions(frame.tactile, self.hand.layout, link_poses, T_cam_base, threshold)
            return positions, np.zeros(len(positions)), np.zeros(len(positions), dtype=bool)
        return contact_gaps(frame.tactile, self.hand.layout, link_poses, T_cam_base, threshold, self.hand.skin)

    def blocks(self, evidence: FrameEvidence, T_cam_obj: np.ndarray) -> list[ResidualBlock]:
        """Depth points on the surface, taxels at their gaps (saturated ones one-sided), hand
        points near the object kept out of it beyond the skin's compliance (one-sided)."""
        pen = self.config["penetration"]
        near = self._hand_points_near(evidence.hand_points, T_cam_obj, pen["band_mm"] * MM)
        return [
            self._block("depth", evidence.depth, np.zeros(len(evidence.depth))),
            self._block("touch", evidence.contacts, evidence.gaps, np.where(evidence.saturated, 1.0, 0.0)),
            self._block("penetration", near, np.full(len(near), -pen["compliance_mm"] * MM), -np.ones(len(near))),
        ]

    def _block(self, name: str, points, target, side=None) -> ResidualBlock:
        """A residual block with the scale, Huber threshold and outlier bound of its config section."""
        config = self.config[name]

        def tensor(array):
            return torch.as_tensor(np.asarray(array), dtype=self.solver.field.dtype, device=self.device)

        return ResidualBlock(
            name,
            tensor(points),
            tensor(target),
            config["sigma_mm"] * MM,
            None if side is None else tensor(side),
            float(config["robust_k"]),
            config.get("outlier_mm", np.inf) * MM,
        )

    def _hand_points_near(self, hand_points: np.ndarray, T_cam_obj: np.ndarray, band: float) -> np.ndarray:
        """Hand points within `band` of the object at T (only those can enter it this frame)."""
        local = (hand_points - T_cam_obj[:3, 3]) @ T_cam_obj[:3, :3]
        return hand_points[self.object.sdf.sample(local) < band]
