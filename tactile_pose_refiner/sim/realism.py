"""A real robot's sensor and calibration errors for generated episodes (config/realism.yaml).

`SensorErrors(preset)` draws an episode's calibration errors once (`draw`) and damages each
frame's clean sensor data with them plus per-frame noise: depth as an active stereo camera gives
it, a segmentation network's mask, joint encoders, the hand-camera calibration, the tactile skin
and the colour camera. It draws from its own random stream, so an episode's grasp and trajectory
are those of the same seed under `clean`, and only the sensors differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import binary_dilation, distance_transform_edt, gaussian_filter
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.skin import SkinLayout

STREAM = 7  # the realism draws' own stream beside the episode's (seed, index)


class RealismError(ValueError):
    """An unknown preset or a malformed config/realism.yaml entry (named in the message)."""


def load_preset(name: str) -> dict:
    presets = load_config("realism")["presets"]
    if name not in presets:
        raise RealismError(f"unknown realism preset {name!r}; known: {', '.join(presets)}")
    return presets[name] or {}


@dataclass
class EpisodeDraw:
    """One episode's calibration errors (constant over its frames) and the touch state."""

    encoder_offset_rad: np.ndarray | None = None  # (J,)
    T_base_error: np.ndarray | None = None  # (4, 4): observed = true @ this
    depth_bias_m: float = 0.0
    mask_bias_px: float = 0.0
    dead_taxels: np.ndarray | None = None  # (N,) bool
    zero_offset: np.ndarray | None = None  # (N, 3) drifting per frame
    latency_frames: int = 0
    rgb_gain: np.ndarray | None = None  # (3,) exposure x white balance
    previous_forces: list = field(default_factory=list)

    def record(self) -> dict:
        """The drawn values as JSON-able numbers (degrees, metres, pixels)."""
        record: dict = {
            "depth_bias_m": self.depth_bias_m,
            "mask_bias_px": self.mask_bias_px,
            "touch_latency_frames": self.latency_frames,
        }
        if self.encoder_offset_rad is not None:
            record["encoder_offset_deg"] = np.degrees(self.encoder_offset_rad).round(4).tolist()
        if self.T_base_error is not None:
            record["base_error_translation_m"] = self.T_base_error[:3, 3].round(6).tolist()
            record["base_error_rotation_deg"] = (
                np.degrees(Rotation.from_matrix(self.T_base_error[:3, :3]).as_rotvec()).round(4).tolist()
            )
        if self.dead_taxels is not None:
            record["dead_taxels"] = np.flatnonzero(self.dead_taxels).tolist()
        if self.rgb_gain is not None:
            record["rgb_gain"] = self.rgb_gain.round(4).tolist()
        return record


class SensorErrors:
    """The errors of one preset. Every method takes the clean value and returns the damaged one;
    a group the preset leaves out passes its input through unchanged."""

    def __init__(self, preset: str = "clean", config: dict | None = None) -> None:
        self.preset = preset
        self.config = load_preset(preset) if config is None else config
        unknown = set(self.config) - {"depth", "mask", "hand", "touch", "rgb", "view"}
        if unknown:
            raise RealismError(f"realism preset {preset!r}: unknown group(s) {sorted(unknown)}")

    @property
    def clean(self) -> bool:
        return not self.config

    def group(self, name: str) -> dict | None:
        return self.config.get(name)

    # -- per episode ------------------------------------------------------------------------
    def draw(self, rng: np.random.Generator, joint_count: int, taxel_count: int) -> EpisodeDraw:
        draw = EpisodeDraw()
        if hand := self.group("hand"):
            draw.encoder_offset_rad = np.radians(rng.normal(0.0, hand["encoder_offset_std_deg"], joint_count))
            error = np.eye(4)
            error[:3, :3] = Rotation.from_rotvec(
                np.radians(rng.normal(0.0, hand["base_rotation_std_deg"], 3))
            ).as_matrix()
            error[:3, 3] = rng.normal(0.0, hand["base_translation_std"], 3)
            draw.T_base_error = error
        if depth := self.group("depth"):
            draw.depth_bias_m = float(rng.normal(0.0, depth["bias_std"]))
        if mask := self.group("mask"):
            draw.mask_bias_px = float(rng.normal(0.0, mask["outline_bias_std_px"]))
        if touch := self.group("touch"):
            draw.dead_taxels = rng.random(taxel_count) < touch["dead_taxels"]
            draw.zero_offset = rng.normal(0.0, touch["zero_offset_std"], (taxel_count, 3))
            draw.latency_frames = int(rng.choice(touch["latency_frames"]))
        if rgb := self.group("rgb"):
            draw.rgb_gain = (1.0 + rng.normal(0.0, rgb["gain_std"])) * (
                1.0 + rng.normal(0.0, rgb["white_balance_std"], 3)
            )
        return draw

    # -- the hand ---------------------------------------------------------------------------
    def joints(self, q: np.ndarray, draw: EpisodeDraw, rng: np.random.Generator) -> np.ndarray:
        """True joint positions (J,) [rad] -> what the encoders read."""
        if (hand := self.group("hand")) is None:
            return q
        return q + draw.encoder_offset_rad + np.radians(rng.normal(0.0, hand["encoder_noise_std_deg"], q.shape))

    @staticmethod
    def base_pose(T_cam_base: np.ndarray, draw: EpisodeDraw) -> np.ndarray:
        """True hand base pose -> the calibrated one (error about the hand base)."""
        return T_cam_base if draw.T_base_error is None else T_cam_base @ draw.T_base_error

    # -- depth ------------------------------------------------------------------------------
    def depth(self, depth_m: np.ndarray, fx: float, draw: EpisodeDraw, rng: np.random.Generator) -> np.ndarray:
        """Exact depth (H, W) [m], 0 = nothing -> an active stereo camera's depth [m], 0 = missing:
        z^2 noise (part of it in smooth blotches), a per-episode bias, stereo shadows left of
        foreground edges, flying pixels and dropouts at edges, random speckle holes."""
        if (config := self.group("depth")) is None:
            return depth_m
        valid = depth_m > 0
        share = float(config["correlated_share"])
        blotches = gaussian_filter(rng.normal(size=depth_m.shape), config["correlation_px"])
        blotches /= max(float(blotches.std()), 1e-12)
        unit_noise = np.sqrt(1.0 - share) * rng.normal(size=depth_m.shape) + np.sqrt(share) * blotches
        noisy = depth_m + draw.depth_bias_m + config["axial_std_at_1m"] * depth_m**2 * unit_noise
        noisy = _flying_pixels(noisy, depth_m, valid, config, rng)
        missing = _stereo_shadow(depth_m, valid, fx * float(config["shadow_baseline"]), float(config["edge_jump"]))
        missing |= _edge_pixels(depth_m, valid, float(config["edge_jump"])) & (
            rng.random(depth_m.shape) < config["edge_dropout"]
        )
        missing |= rng.random(depth_m.shape) < config["speckle_holes"]
        return np.where(valid & ~missing, np.maximum(noisy, 0.0), 0.0)

    # -- the object mask --------------------------------------------------------------------
    def mask(
        self, object_mask: np.ndarray, hand_mask: np.ndarray, draw: EpisodeDraw, rng: np.random.Generator
    ) -> np.ndarray:
        """True visible object mask (H, W) bool -> a segmentation network's: the outline moved by
        a per-episode bias plus a smooth field along it, bleeding onto a touching finger, holes
        and false blobs."""
        if (config := self.group("mask")) is None or not object_mask.any():
            return object_mask
        # signed distance of pixel centres to the outline: +-0.5 px beside it
        signed = np.where(
            object_mask, distance_transform_edt(object_mask) - 0.5, 0.5 - distance_transform_edt(~object_mask)
        )
        wobble = gaussian_filter(rng.normal(size=object_mask.shape), config["outline_scale_px"])
        wobble *= config["outline_std_px"] / max(float(wobble.std()), 1e-12)
        mask = signed + draw.mask_bias_px + wobble > 0.0
        if rng.random() < config["bleed_chance"]:
            mask |= _bleed(object_mask, hand_mask, config["bleed_px"], config["bleed_radius_px"], rng)
        low, high = config["blob_radius_px"]
        if rng.random() < config["hole_chance"]:
            mask &= ~_disk_near(object_mask, rng.uniform(low, high), inside=True, rng=rng)
        if rng.random() < config["blob_chance"]:
            mask |= _disk_near(object_mask, rng.uniform(low, high), inside=False, rng=rng)
        return mask

    # -- touch ------------------------------------------------------------------------------
    def touch(
        self,
        forces: np.ndarray,
        neighbours: np.ndarray | None,
        draw: EpisodeDraw,
        rng: np.random.Generator,
        max_units: float,
    ) -> np.ndarray | None:
        """Noise-free taxel forces (N, 3) -> the skin's reading: crosstalk to neighbours
        (`neighbours` (N, N) 0/1), a drifting zero, noise, dead taxels, latency. None when the
        preset has no touch errors (the generator's own noise applies)."""
        if (config := self.group("touch")) is None:
            return None
        read = forces + config["crosstalk"] * (neighbours @ forces)
        draw.zero_offset = draw.zero_offset + rng.normal(0.0, config["zero_drift_std"], draw.zero_offset.shape)
        read = read + draw.zero_offset + rng.normal(0.0, config["noise_std"], forces.shape)
        read[draw.dead_taxels] = 0.0
        read = np.clip(read, -max_units, max_units)
        draw.previous_forces.append(read)
        lagged = draw.previous_forces[max(0, len(draw.previous_forces) - 1 - draw.latency_frames)]
        del draw.previous_forces[: -(draw.latency_frames + 1)]
        return lagged

    def taxel_neighbours(self, layout: SkinLayout) -> np.ndarray | None:
        """(N, N) 1 where two taxels of one link lie within crosstalk_radius; None without touch errors."""
        if (config := self.group("touch")) is None:
            return None
        return layout.neighbours(float(config["crosstalk_radius"]))

    # -- colour -----------------------------------------------------------------------------
    def rgb(self, rgb: np.ndarray, draw: EpisodeDraw, rng: np.random.Generator) -> np.ndarray | None:
        """Noise-free colour (H, W, 3) uint8 -> exposure, white balance and sensor noise; None
        when the preset has no colour errors (the generator's own noise applies)."""
        if (config := self.group("rgb")) is None:
            return None
        image = rgb * draw.rgb_gain + rng.normal(0.0, config["noise_std"], rgb.shape)
        return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _neighbour_depths(depth: np.ndarray) -> list[np.ndarray]:
    """Each pixel's four neighbours' depths (edge-replicated)."""
    padded = np.pad(depth, 1, mode="edge")
    return [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]


def _edge_pixels(depth: np.ndarray, valid: np.ndarray, jump: float) -> np.ndarray:
    """Valid pixels beside a depth step > jump or beside nothing."""
    edge = np.zeros(depth.shape, bool)
    for other in _neighbour_depths(depth):
        edge |= (other <= 0) | (np.abs(other - depth) > jump)
    return edge & valid


def _flying_pixels(
    noisy: np.ndarray, depth: np.ndarray, valid: np.ndarray, config: dict, rng: np.random.Generator
) -> np.ndarray:
    """Edge pixels between two surfaces take a depth between them (mixed stereo windows)."""
    jump = float(config["edge_jump"])
    farthest = np.maximum.reduce([np.where(o > 0, o, depth) for o in _neighbour_depths(depth)])
    between = valid & (farthest - depth > jump) & (rng.random(depth.shape) < config["flying_pixels"])
    mixed = depth + rng.random(depth.shape) * (farthest - depth)
    return np.where(between, mixed, noisy)


def _stereo_shadow(depth: np.ndarray, valid: np.ndarray, focal_baseline_px_m: float, jump: float) -> np.ndarray:
    """Pixels of a far surface left of a nearer one that the second imager cannot see: a band
    f B (1/z_near - 1/z_far) px wide (D4xx: the left imager is the reference)."""
    shadow = np.zeros(depth.shape, bool)
    near, far = depth[:, 1:], depth[:, :-1]  # pixel x+1 nearer than pixel x by > jump
    step = valid[:, 1:] & valid[:, :-1] & (far - near > jump)
    width = np.zeros(step.shape)
    width[step] = focal_baseline_px_m * (1.0 / near[step] - 1.0 / far[step])
    rows, cols = np.nonzero(step)
    for row, col, w in zip(rows, cols, width[rows, cols]):
        shadow[row, max(0, col + 1 - int(np.ceil(w))) : col + 1] = True
    return shadow & valid


def _bleed(
    object_mask: np.ndarray, hand_mask: np.ndarray, depth_px: float, radius_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Hand pixels within depth_px of the object around one random point of their border."""
    near_object = hand_mask & (distance_transform_edt(~object_mask) <= depth_px)
    rows, cols = np.nonzero(near_object)
    if len(rows) == 0:
        return np.zeros_like(object_mask)
    k = rng.integers(len(rows))
    yy, xx = np.ogrid[: object_mask.shape[0], : object_mask.shape[1]]
    return near_object & ((yy - rows[k]) ** 2 + (xx - cols[k]) ** 2 <= radius_px**2)


def _disk_near(object_mask: np.ndarray, radius: float, inside: bool, rng: np.random.Generator) -> np.ndarray:
    """A disk centred at a random pixel inside the mask (a hole) or within 30 px outside it (a
    false blob)."""
    if inside:
        candidates = distance_transform_edt(object_mask) > radius
    else:
        candidates = binary_dilation(object_mask, iterations=30) & ~binary_dilation(
            object_mask, iterations=int(radius) + 1
        )
    rows, cols = np.nonzero(candidates)
    if len(rows) == 0:
        return np.zeros_like(object_mask)
    k = rng.integers(len(rows))
    yy, xx = np.ogrid[: object_mask.shape[0], : object_mask.shape[1]]
    return (yy - rows[k]) ** 2 + (xx - cols[k]) ** 2 <= radius**2
