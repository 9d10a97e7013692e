"""The held object's mass from touch: Newton's second law over a trajectory.

The taxels over gamma push the object with their calibrated forces (skin.taxel_frames'
convention, force_scale newtons per unit); in the hand base frame their sum F_k at frame k is

    F_k = m R_k^T (a_k - g) + b

with a_k the centre of mass's acceleration (from the object's refined, tracked or true poses,
differentiated by a Savitzky-Golay filter), g gravity and R_k the hand's orientation, all in the
camera frame, and b a constant in the hand: the skin's zero offsets and the part of the squeeze
that a few degrees of encoder error turn into a net force. The zero also drifts (a random walk
per axis): generalised least squares gives m and b, and m's standard deviation. The hand must
turn the load's direction (or accelerate it) for m and b to separate: an episode where it turns
less than `min_turn_deg` is reported as too little motion instead of guessed.

Encoders off by degrees turn each finger's share of that squeeze, which is several times the
weight; the episode's constant encoder offsets are read from the hand's own depth pixels first
(the refiner's hand fit, core/scene/hand_fit.py, on every `hand_fit_every`-th frame; the median
of its per-frame offsets) and taken off every frame's joints.

A dead taxel on the object's surface may carry a share of the load the sum never sees (measured
-24 to +6 % on realistic episodes): the estimate counts such taxels (`unseen_taxels`), and
`tpr identify-mass` prefers the episodes whose whole contact the skin saw.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import numpy as np
from scipy.signal import savgol_filter

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.geometry import invert
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.kinematics import HandKinematics
from tactile_pose_refiner.core.scene.skin import SkinLayout, taxel_frames


@dataclass(frozen=True)
class MassEstimate:
    mass_kg: float | None  # None: the episode cannot tell (status says why)
    std_kg: float | None
    frames: int
    turn_deg: float  # how far the load's direction turned in the hand over the episode
    status: str  # "ok", "too little motion: ...", "no calibrated touch: ..."
    unseen_taxels: int = 0  # dead taxels in the contact: the load they carry is missing from the sum


@dataclass(frozen=True)
class JointOffsets:
    """The encoders' constant offsets over an episode [rad, URDF order] (zeros: none found) and
    how they were found."""

    offsets: np.ndarray
    status: str

    @classmethod
    def from_depth(cls, frames: list[Frame], hand, every: int) -> JointOffsets:
        """The median of the hand fit's joint corrections on every `every`-th frame (hand:
        HandAssets with a fitter); frames the fit leaves alone do not count."""
        count = len(hand.model.joint_names)
        if every <= 0 or hand.fitter is None:
            return cls(np.zeros(count), "encoders as read (hand fit off)")
        corrections = []
        sampled = [frame for frame in frames[::every] if frame.depth_mm is not None]
        for frame in sampled:
            posed = hand.posed(frame)
            correction = getattr(posed, "correction", None)
            if correction is not None and correction.status == "ok" and correction.recalled_s is None:
                corrections.append(correction.q - hand.model.joint_vector(frame.joint_names, frame.joint_positions))
        if not corrections:
            return cls(np.zeros(count), f"encoders as read (the hand fit corrected none of {len(sampled)} frames)")
        offsets = np.median(corrections, axis=0)
        rms = float(np.degrees(np.sqrt(np.mean(offsets**2))))
        return cls(offsets, f"encoders corrected by {rms:.2f} deg rms (hand fit on {len(corrections)} frames)")

    def applied(self, frame: Frame, hand: HandKinematics) -> Frame:
        """The frame with its joints corrected (its own names and order)."""
        if not self.offsets.any():
            return frame
        urdf_index = {name: i for i, name in enumerate(hand.joint_names)}
        positions = np.array(frame.joint_positions, dtype=np.float64)
        for i, name in enumerate(frame.joint_names):
            if name in hand.name_map:
                positions[i] += self.offsets[urdf_index[hand.name_map[name]]]
        return replace(frame, joint_positions=positions)


@dataclass(frozen=True)
class SkinCalibration:
    """What identification knows of the skin beyond each reading's force_scale."""

    threshold_units: float  # gamma: a taxel over it touches
    saturation_units: float  # a touching taxel at its range: its force is unknown, the frame is left out
    crosstalk_share: float = 0.0  # characterised share of a taxel's force each neighbour also reads ...
    crosstalk_radius_m: float = 0.0  # ... for neighbours on its link within this distance

    @classmethod
    def of(cls, dynamics: dict | None, tactile: dict, config: dict) -> SkinCalibration:
        """From config/tactile.yaml, the crosstalk the episode's skin was characterised with
        (recorded by the generator) or else config/mass.yaml's."""
        source = dynamics if dynamics and "crosstalk_share" in dynamics else config
        return cls(
            float(tactile["contact_threshold_units"]),
            float(tactile["max_units"]),
            float(source["crosstalk_share"]),
            float(source["crosstalk_radius_m"]),
        )

    def unmixing(self, layout: SkinLayout) -> np.ndarray | None:
        """(N, N) that undoes the crosstalk, readings = (I + share * neighbours) forces; None without it."""
        if self.crosstalk_share <= 0.0:
            return None
        mixing = np.eye(len(layout)) + self.crosstalk_share * layout.neighbours(self.crosstalk_radius_m)
        return np.linalg.inv(mixing)


def skin_readings(frame: Frame, layout: SkinLayout) -> np.ndarray:
    """(N, 3) [sensor units] the frame's reading of every layout taxel (0 where it lacks one)."""
    reading = frame.tactile
    rows = np.array([layout.row_of_id.get(int(taxel), -1) for taxel in reading.taxel_ids])
    read = np.zeros((len(layout), 3))
    read[rows[rows >= 0]] = np.asarray(reading.forces, dtype=np.float64)[rows >= 0]
    return read


def skin_forces(read: np.ndarray, skin: SkinCalibration, unmixing: np.ndarray | None = None) -> np.ndarray:
    """Readings (..., N, 3) -> forces [sensor units], crosstalk undone; NaN rows where a taxel
    saturates (its force is unknown)."""
    forces = read if unmixing is None else unmixing @ read
    return np.where((np.abs(read) >= skin.saturation_units).any(axis=-1, keepdims=True), np.nan, forces)


def dead_taxels(read: np.ndarray) -> np.ndarray:
    """(N,) bool: taxels whose reading (K, N, 3) never changes over an episode (dead or
    disconnected; a live one always carries noise)."""
    return np.ptp(read, axis=0).max(axis=1) == 0.0


def fill_dead_taxels(read: np.ndarray, beside: np.ndarray) -> np.ndarray:
    """Readings (K, N, 3) of an episode: a dead taxel reads the median of its live neighbours
    (beside (N, N)), per axis and frame. Not their mean: at a patch's rim the one neighbour
    at its centre would lift it (measured: a thumb taxel reading 170 filled with 633, +23 %
    on that episode's mass)."""
    dead = dead_taxels(read)
    filled = read.copy()
    for taxel in np.flatnonzero(dead):
        live = np.flatnonzero((beside[taxel] > 0) & ~dead)
        filled[:, taxel] = np.median(read[:, live], axis=1) if len(live) else 0.0
    return filled


def dead_in_contact(
    frames: list[Frame],
    T_cam_obj: list[np.ndarray],
    dead: np.ndarray,
    layout: SkinLayout,
    hand: HandKinematics,
    surface: MeshDistance,
    within_m: float,
    every: int = 10,
) -> int:
    """How many of the `dead` (N,) bool taxels lie within `within_m` of the object's surface
    (`surface`: its distances, object frame), the median over every `every`-th frame at the
    poses used: the load they may carry is missing from the sum. Geometry, not the neighbours:
    a fingertip often touches with one taxel alone."""
    rows = np.flatnonzero(dead)
    if len(rows) == 0:
        return 0
    gaps = []
    for frame, T in list(zip(frames, T_cam_obj))[::every]:
        q = hand.joint_vector(frame.joint_names, frame.joint_positions)
        positions, _ = layout.posed(hand.link_poses(q), invert(T) @ frame.T_cam_base)
        gaps.append(surface.query(positions[rows], max_distance=10 * within_m)[0])
    return int((np.median(gaps, axis=0) < within_m).sum())


def hand_contact_force(
    frame: Frame, layout: SkinLayout, hand: HandKinematics, forces: np.ndarray, contacts: np.ndarray
) -> np.ndarray:
    """(3,) [N] the push of the `contacts` taxels (N,) bool with `forces` (N, 3) [units] on the
    object, hand base frame (the frame's own joints); NaN where one of them saturates."""
    q = hand.joint_vector(frame.joint_names, frame.joint_positions)
    _, normals, x_axes, y_axes = taxel_frames(layout, hand.link_poses(q), np.eye(4))
    f, n, x, y = forces[contacts], normals[contacts], x_axes[contacts], y_axes[contacts]
    push = f[:, 2:3] * n - f[:, 0:1] * x - f[:, 1:2] * y
    return frame.tactile.force_scale * push.sum(axis=0)


def com_accelerations(T_cam_obj: np.ndarray, com_obj: np.ndarray, dt: float, window: int) -> np.ndarray:
    """(K, 3) [m/s^2] of the centre of mass, camera frame: a Savitzky-Golay second derivative
    (a plain one turns 1 mm of pose noise into 1 m/s^2 at 30 Hz)."""
    com = T_cam_obj[:, :3, :3] @ com_obj + T_cam_obj[:, :3, 3]
    window = min(window, len(com) - (1 - len(com) % 2))  # odd and no longer than the episode
    if window < 5:
        return np.zeros_like(com)
    return savgol_filter(com, window, 3, deriv=2, delta=dt, axis=0)


def identify_mass(
    hand_forces: np.ndarray,
    loads: np.ndarray,
    min_turn_deg: float = 5.0,
    min_frames: int = 10,
    drift_ratios: tuple[float, ...] = (0.0,),
) -> MassEstimate:
    """Least squares of hand_forces (K, 3) [N] = m loads (K, 3) [m/s^2] + b + drift.
    loads: R_k^T (a_k - g), the acceleration the contacts give the object, hand frame. The skin's
    zero drifts as a random walk: per axis the residuals' covariance is s2 (I + r min(t, t')),
    r from `drift_ratios` (0: a constant zero), the likeliest kept (generalised least squares;
    a drift pays for its parameter as the Bayesian information criterion has it)."""
    usable = np.isfinite(hand_forces).all(axis=1) & np.isfinite(loads).all(axis=1)
    times = np.flatnonzero(usable).astype(np.float64)
    hand_forces, loads = hand_forces[usable], loads[usable]
    frames = len(loads)
    if frames < min_frames:
        return MassEstimate(None, None, frames, 0.0, f"too few frames: {frames} usable (needs {min_frames})")
    directions = loads / np.linalg.norm(loads, axis=1, keepdims=True)
    mean = directions.mean(axis=0) / np.linalg.norm(directions.mean(axis=0))
    turn_deg = float(2 * np.degrees(np.arccos(np.clip(directions @ mean, -1.0, 1.0))).max())
    if turn_deg < min_turn_deg:
        return MassEstimate(
            None,
            None,
            frames,
            turn_deg,
            f"too little motion: the load turned {turn_deg:.1f} deg in the hand (needs {min_turn_deg:g}); "
            "the weight and the skin's offsets cannot be told apart",
        )
    fits = [_drifting_fit(hand_forces, loads, times, r) for r in drift_ratios]
    # a drift must earn its parameter over a constant zero (Bayesian information criterion)
    penalty = 0.5 * np.log(3 * frames)
    fits = [(m, sd, ll - (penalty if r > 0 else 0.0)) for (m, sd, ll), r in zip(fits, drift_ratios)]
    mass, std = max(fits, key=lambda fit: fit[2])[:2]
    if mass <= 2.0 * std:  # no mass is distinguishable from nothing: the touch does not carry the load
        status = f"no physical estimate: {mass * 1000:.0f} +- {std * 1000:.0f} g (a dead taxel under the load?)"
        return MassEstimate(None, None, frames, turn_deg, status)
    return MassEstimate(mass, std, frames, turn_deg, "ok")


def _drifting_fit(
    hand_forces: np.ndarray, loads: np.ndarray, times: np.ndarray, ratio: float
) -> tuple[float, float, float]:
    """(m, its std, log-likelihood) with residuals of covariance s2 (I + ratio min(t, t')) per axis."""
    frames = len(times)
    factor = np.linalg.cholesky(np.eye(frames) + ratio * np.minimum.outer(times - times[0], times - times[0]))
    whiten = np.linalg.inv(factor)
    design = np.zeros((3, frames, 4))
    for axis in range(3):
        design[axis, :, 0] = whiten @ loads[:, axis]
        design[axis, :, 1 + axis] = whiten.sum(axis=1)
    design = design.reshape(3 * frames, 4)
    target = (whiten @ hand_forces).T.ravel()
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ solution
    variance = max(float(residual @ residual) / max(1, 3 * frames - 4), 1e-300)
    std = float(np.sqrt(variance * np.linalg.inv(design.T @ design)[0, 0]))
    log_likelihood = -0.5 * 3 * frames * np.log(variance) - 3 * np.log(np.diag(factor)).sum()
    return float(solution[0]), std, float(log_likelihood)


def episode_mass(
    frames: list[Frame],
    T_cam_obj: list[np.ndarray],
    com_obj: np.ndarray,
    gravity_cam: np.ndarray,
    layout: SkinLayout,
    hand: HandKinematics,
    skin: SkinCalibration,
    config: dict,
    surface: MeshDistance,
) -> MassEstimate:
    """An episode's mass from its frames' touch and joints and the object's poses (config:
    config/mass.yaml; surface: the object's distances, for dead taxels on it); the frame
    spacing comes from the stamps."""
    if not frames or not all(frame.tactile is not None and frame.tactile.force_scale > 0 for frame in frames):
        return MassEstimate(None, None, len(frames), 0.0, "no calibrated touch: the readings carry no force_scale")
    if len(frames) < config["min_frames"]:  # before the dead-taxel test: one frame's readings never change
        status = f"too few frames: {len(frames)} (needs {config['min_frames']})"
        return MassEstimate(None, None, len(frames), 0.0, status)
    dt = float(np.median(np.diff([frame.stamp_ns for frame in frames]))) * 1e-9 if len(frames) > 1 else 1.0
    acceleration = com_accelerations(np.asarray(T_cam_obj), com_obj, dt, int(config["savgol_window"]))
    loads = np.array(
        [frame.T_cam_base[:3, :3].T @ (a - gravity_cam) for frame, a in zip(frames, acceleration)], dtype=np.float64
    )
    beside = layout.neighbours(float(config["contact_radius_m"]))
    read = np.array([skin_readings(frame, layout) for frame in frames])
    dead = dead_taxels(read)
    forces = skin_forces(fill_dead_taxels(read, beside), skin, skin.unmixing(layout))
    over = np.linalg.norm(forces, axis=2) > skin.threshold_units  # NaN (saturated) compares False
    touching = float(np.median(over.sum(axis=1)))
    if touching < config["min_taxels"]:
        status = f"too little touch: a median {touching:.0f} taxels over gamma (needs {config['min_taxels']})"
        return MassEstimate(None, None, len(frames), 0.0, status)
    # the contact set of the episode: a light share of the load sits on taxels under gamma in a frame
    contacts = over.mean(axis=0) >= config["contact_share"]
    contacts |= beside @ contacts > 0  # ... and beside a contact
    pushes = np.array([hand_contact_force(f, layout, hand, read, contacts) for f, read in zip(frames, forces)])
    ratios = tuple(float(r) for r in config["drift_ratios"])
    estimate = identify_mass(pushes, loads, config["min_turn_deg"], config["min_frames"], ratios)
    unseen = dead_in_contact(frames, T_cam_obj, dead, layout, hand, surface, float(config["unseen_gap_m"]))
    return replace(estimate, unseen_taxels=unseen)


class OnlineMass:
    """The held object's mass while it is carried: `episode_mass` over the frames of the last
    `window_s` seconds, refreshed every `every_s` (config/mass.yaml `online`; stamps, not wall time)."""

    def __init__(
        self,
        com_obj: np.ndarray,
        gravity_cam: np.ndarray,
        layout: SkinLayout,
        hand: HandKinematics,
        skin: SkinCalibration,
        config: dict,
        surface: MeshDistance,
    ) -> None:
        self.com_obj, self.gravity_cam = com_obj, np.asarray(gravity_cam, dtype=np.float64)
        self.layout, self.hand, self.skin, self.config, self.surface = layout, hand, skin, config, surface
        self.window: deque[tuple[Frame, np.ndarray]] = deque()
        self.estimated_ns: int | None = None
        self.latest: MassEstimate | None = None

    def add(self, frame: Frame, T_cam_obj: np.ndarray) -> MassEstimate | None:
        """Keeps the frame (without its images) and its object pose; a fresh estimate when one is due."""
        online = self.config["online"]
        self.window.append((replace(frame, rgb=None, depth_mm=None, mask=None), np.asarray(T_cam_obj)))
        while frame.stamp_ns - self.window[0][0].stamp_ns > online["window_s"] * 1e9:
            self.window.popleft()
        if self.estimated_ns is not None and frame.stamp_ns - self.estimated_ns < online["every_s"] * 1e9:
            return None
        self.estimated_ns = frame.stamp_ns
        frames, poses = zip(*self.window)
        args = (self.com_obj, self.gravity_cam, self.layout, self.hand, self.skin, self.config, self.surface)
        self.latest = episode_mass(list(frames), list(poses), *args)
        return self.latest
