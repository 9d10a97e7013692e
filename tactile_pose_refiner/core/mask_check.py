"""The object mask checked against depth: a segmentation network's outline is a few pixels off
and varies along it, so near the outline the mask alone is no exact edge.

Within `band_px` of the observed outline each pixel's depth is compared with the object's depth
there (the nearest pixel well inside the mask). A mask pixel that depth confirms stays object; one
far behind the object is background; one with no depth or in front of the object (a finger the
mask bled onto) is uncertain. A pixel outside the mask that looks like the object's surface (a
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
        """Uncertain pixels per observed-object pixel (a diagnostic of how far the mask is off)."""
        return float(self.uncertain.sum()) / max(1, int(self.object.sum()))


def check_mask(mask: np.ndarray, depth_m: np.ndarray | None, hand: np.ndarray | None,
               config: dict) -> CheckedMask:
    """mask (H, W) bool/uint8 (>0 object); depth_m (H, W) [m], 0 = missing, or None; hand (H, W)
    bool silhouette of the hand or None. config: band_px, same_surface_m (a depth within this of
    the object's is its surface), behind_m (farther than this behind it is background)."""
    mask = np.asarray(mask) > 0
    band = float(config["band_px"])
    if band <= 0 or not mask.any():
        return CheckedMask(mask, np.zeros_like(mask))
    if depth_m is None:   # nothing to check with: the band is uncertain
        depth_m = np.zeros(mask.shape)
    depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    inside, outside = distance_transform_edt(mask), distance_transform_edt(~mask)
    near_outline = np.where(mask, inside <= band, outside <= band)
    # the object's depth near each pixel: that of the nearest valid pixel well inside the mask
    core = (inside > min(band, 0.5 * inside.max())) & (depth > 0)
    if not core.any():
        return CheckedMask(mask & ~near_outline, near_outline)
    nearest = distance_transform_edt(~core, return_indices=True)[1]
    offset = depth - depth[nearest[0], nearest[1]]      # + behind the object's surface
    valid = depth > 0
    surface = valid & (np.abs(offset) <= float(config["same_surface_m"]))
    behind = valid & (offset > float(config["behind_m"]))
    hand = np.zeros_like(mask) if hand is None else np.asarray(hand, bool)
    doubtful_inside = mask & ~surface & ~behind              # no depth, in front, or just behind
    doubtful_outside = ~mask & surface & ~hand               # the object's surface beyond the mask
    uncertain = near_outline & (doubtful_inside | doubtful_outside)
    background = near_outline & mask & behind
    return CheckedMask(mask & ~uncertain & ~background, uncertain)
