"""The object mask checked against depth: a segmentation network's outline is a few pixels off
and varies along it, so near the outline the mask alone is no exact edge.

Within `band_px` of the observed outline a pixel is on the object's surface when depth reaches it
from well inside the mask in steps of at most `same_surface_m` (a surface continues smoothly, a
face seen at a grazing angle too; the step to a background breaks it). A mask pixel with
no depth, or farther than `off_surface_m` in depth from that surface (background the mask grew
onto, something in front), is uncertain; so is one showing the posed hand's own surface (a mask
that bled onto a finger). A pixel outside the mask that looks like the object's surface (a
mask that came out too small) is uncertain, unless the hand covers it. Uncertain pixels leave the
losses that read the mask: the edge lies somewhere among them and only the confirmed pixels on
either side say where. An exact mask on exact depth is confirmed everywhere: nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt


@dataclass(frozen=True)
class CheckedMask:
    """object (H, W) bool: confirmed object pixels; uncertain (H, W) bool: pixels neither the
    mask nor depth can settle (they leave the mask-reading losses)."""

    object: np.ndarray
    uncertain: np.ndarray

    @property
    def uncertain_share(self) -> float:
        """Uncertain pixels per confirmed object pixel (a diagnostic of how far the mask is off)."""
        return float(self.uncertain.sum()) / max(1, int(self.object.sum()))


def check_mask(
    mask: np.ndarray,
    depth_m: np.ndarray | None,
    hand: np.ndarray | None,
    config: dict,
    hand_depth: np.ndarray | None = None,
) -> CheckedMask:
    """mask (H, W) bool/uint8 (>0 object); depth_m (H, W) [m], 0 = missing, or None; hand (H, W)
    bool silhouette of the hand (grown for its error) or None; hand_depth (H, W) [m] the posed
    hand's depth, 0 off it, or None. config: band_px, same_surface_m (the largest depth step
    between neighbouring pixels of one surface), off_surface_m, hand_surface_m (a mask pixel whose
    depth is this close to the hand's there shows the hand: a mask that bled onto a finger)."""
    mask = np.asarray(mask) > 0
    bled = np.zeros_like(mask)
    if hand_depth is not None and depth_m is not None:
        bled = mask & (hand_depth > 0) & (np.abs(np.nan_to_num(depth_m) - hand_depth) < float(config["hand_surface_m"]))
    checked = _check_outline(mask & ~bled, depth_m, hand, config)
    return CheckedMask(checked.object, checked.uncertain | bled)


def _check_outline(mask: np.ndarray, depth_m: np.ndarray | None, hand: np.ndarray | None, config: dict) -> CheckedMask:
    """The band along the outline of `mask` (bool) checked against depth (check_mask)."""
    band = float(config["band_px"])
    if band <= 0 or not mask.any():
        return CheckedMask(mask, np.zeros_like(mask))
    if depth_m is None:  # nothing to check with: the band is uncertain
        depth_m = np.zeros(mask.shape)
    depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    inside, outside = distance_transform_edt(mask), distance_transform_edt(~mask)
    near_outline = np.where(mask, inside <= band, outside <= band)
    # well inside the mask (with depth): where the surface grows from
    core = (inside > min(band, 0.5 * inside.max())) & (depth > 0)
    if not core.any():
        return CheckedMask(mask & ~near_outline, near_outline)
    surface = _connected_surface(
        depth, core, near_outline & (depth > 0), float(config["same_surface_m"]), 2 * int(np.ceil(band)) + 1
    )
    hand = np.zeros_like(mask) if hand is None else np.asarray(hand, bool)
    # a mask pixel off that surface by more than off_surface_m (background the mask grew onto,
    # something in front), or without depth; one just off it is a face seen at a grazing angle
    nearest = distance_transform_edt(~surface, return_indices=True)[1]
    off_surface = np.abs(depth - depth[nearest[0], nearest[1]]) > float(config["off_surface_m"])
    doubtful_inside = mask & ((depth <= 0) | (~surface & off_surface))
    doubtful_outside = ~mask & surface & ~hand  # the object's surface beyond the mask
    uncertain = near_outline & (doubtful_inside | doubtful_outside)
    return CheckedMask(mask & ~uncertain, uncertain)


def _connected_surface(
    depth: np.ndarray, core: np.ndarray, candidates: np.ndarray, step_m: float, rounds: int
) -> np.ndarray:
    """Pixels reached from the core through 4-neighbours whose depths differ by at most step_m:
    the object's own surface continues smoothly (a face seen at a grazing angle too), while a
    step to the background or a hole breaks it."""
    surface = core.copy()
    for _ in range(rounds):
        grown = np.zeros_like(surface)
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
            neighbour_surface = np.roll(surface, shift, axis)
            neighbour_depth = np.roll(depth, shift, axis)
            grown |= neighbour_surface & (np.abs(depth - neighbour_depth) <= step_m)
        grown &= candidates & ~surface
        if not grown.any():
            break
        surface |= grown
    return surface
