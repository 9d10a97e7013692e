"""The held object's mass from touch: Newton's second law over a trajectory.

The taxels over gamma push the object with their calibrated forces (skin.taxel_frames'
convention, force_scale newtons per unit); in the hand base frame their sum F_k at frame k is

    F_k = m R_k^T (a_k - g) + b

with a_k the centre of mass's acceleration (from the object's refined, tracked or true poses,
differentiated by a Savitzky-Golay filter), g gravity and R_k the hand's orientation, all in the
camera frame, and b a constant in the hand: the skin's zero offsets and the part of the squeeze
that a few degrees of encoder error turn into a net force. Least squares gives m and b, and
the residuals m's standard deviation. The hand must turn the load's direction (or accelerate
it) for m and b to separate: an episode where it turns less than `min_turn_deg` is reported as
too little motion instead of guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.scene.kinematics import HandKinematics
from tactile_pose_refiner.core.scene.skin import SkinLayout, taxel_frames


@dataclass(frozen=True)
class MassEstimate:
    mass_kg: float | None  # None: the episode cannot tell (status says why)
    std_kg: float | None
    frames: int
    turn_deg: float  # how far the load's direction turned in the hand over the episode
    status: str  # "ok", "too little motion: ...", "no calibrated touch: ..."


def hand_contact_force(
    frame: Frame, layout: SkinLayout, hand: HandKinematics, threshold: float
) -> tuple[np.ndarray, int]:
    """(3,) [N] the touching taxels' push on the object, hand base frame (the frame's own
    joints), and how many taxels touch."""
    reading = frame.tactile
    q = hand.joint_vector(frame.joint_names, frame.joint_positions)
    _, normals, x_axes, y_axes = taxel_frames(layout, hand.link_poses(q), np.eye(4))
    index = {int(taxel): row for row, taxel in enumerate(layout.ids)}
    rows = np.array([index.get(int(taxel), -1) for taxel in reading.taxel_ids])
    forces = np.asarray(reading.forces, dtype=np.float64)
    touching = (rows >= 0) & (np.linalg.norm(forces, axis=1) > threshold)
    f, r = forces[touching], rows[touching]
    push = f[:, 2:3] * normals[r] - f[:, 0:1] * x_axes[r] - f[:, 1:2] * y_axes[r]
    return reading.force_scale * push.sum(axis=0), int(touching.sum())


def com_accelerations(T_cam_obj: np.ndarray, com_obj: np.ndarray, dt: float, window: int) -> np.ndarray:
    """(K, 3) [m/s^2] of the centre of mass, camera frame: a Savitzky-Golay second derivative
    (a plain one turns 1 mm of pose noise into 1 m/s^2 at 30 Hz)."""
    com = T_cam_obj[:, :3, :3] @ com_obj + T_cam_obj[:, :3, 3]
    window = min(window, len(com) - (1 - len(com) % 2))  # odd and no longer than the episode
    if window < 5:
        return np.zeros_like(com)
    return savgol_filter(com, window, 3, deriv=2, delta=dt, axis=0)


def identify_mass(
    hand_forces: np.ndarray, loads: np.ndarray, min_turn_deg: float = 5.0, min_frames: int = 10
) -> MassEstimate:
    """Least squares of hand_forces (K, 3) [N] = m loads (K, 3) [m/s^2] + b.
    loads: R_k^T (a_k - g), the acceleration the contacts give the object, hand frame."""
    usable = np.isfinite(hand_forces).all(axis=1) & np.isfinite(loads).all(axis=1)
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
    design = np.zeros((3 * frames, 4))
    design[:, 0] = loads.ravel()
    design[:, 1:] = np.tile(np.eye(3), (frames, 1))
    solution, *_ = np.linalg.lstsq(design, hand_forces.ravel(), rcond=None)
    residual = hand_forces.ravel() - design @ solution
    variance = residual @ residual / max(1, 3 * frames - 4)
    std = float(np.sqrt(variance * np.linalg.inv(design.T @ design)[0, 0]))
    return MassEstimate(float(solution[0]), std, frames, turn_deg, "ok")


def episode_mass(
    frames: list[Frame],
    T_cam_obj: list[np.ndarray],
    com_obj: np.ndarray,
    gravity_cam: np.ndarray,
    layout: SkinLayout,
    hand: HandKinematics,
    threshold: float,
    config: dict,
) -> MassEstimate:
    """An episode's mass from its frames' touch and joints and the object's poses (config:
    config/mass.yaml); the frame spacing comes from the stamps."""
    if not frames or not all(frame.tactile is not None and frame.tactile.force_scale > 0 for frame in frames):
        return MassEstimate(None, None, len(frames), 0.0, "no calibrated touch: the readings carry no force_scale")
    dt = float(np.median(np.diff([frame.stamp_ns for frame in frames]))) * 1e-9 if len(frames) > 1 else 1.0
    acceleration = com_accelerations(np.asarray(T_cam_obj), com_obj, dt, int(config["savgol_window"]))
    loads = np.array(
        [frame.T_cam_base[:3, :3].T @ (a - gravity_cam) for frame, a in zip(frames, acceleration)], dtype=np.float64
    )
    pushes = [hand_contact_force(frame, layout, hand, threshold) for frame in frames]
    touching = float(np.median([count for _, count in pushes]))
    if touching < config["min_taxels"]:
        status = f"too little touch: a median {touching:.0f} taxels over gamma (needs {config['min_taxels']})"
        return MassEstimate(None, None, len(frames), 0.0, status)
    forces = np.array([force for force, _ in pushes])
    return identify_mass(forces, loads, config["min_turn_deg"], config["min_frames"])
