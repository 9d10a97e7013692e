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

Outside the mask and the posed hand's own surface, a surface whose depth lies in front of the
object's nearest seen surface by more than `occluder_in_front_m` is something in front of it (a tool, another
object, a finger the hand model misplaces): the object may continue behind it, so its pixels say
nothing about where the object is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class CheckedMask:
    """object (H, W) bool: confirmed object pixels; uncertain (H, W) bool: pixels neither the
    mask nor depth can settle (they leave the mask-reading losses); occluded (H, W) bool: pixels
    outside the object showing something in front of it (they leave them too), or None."""

    object: np.ndarray
    uncertain: np.ndarray
    occluded: np.ndarray | None = None

    @property
    def unseen(self) -> np.ndarray:
        """(H, W) bool: pixels that say nothing about the object: uncertain or occluded."""
        return self.uncertain if self.occluded is None else self.uncertain | self.occluded

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
    depth is this close to the hand's there shows the hand: a mask that bled onto a finger),
    occluder_in_front_m (optional: a surface this far in front of the object is an occluder; depth
    this close to the posed hand's is the hand)."""
    mask = np.asarray(mask) > 0
    # depth's distance from the posed hand's surface where the hand is, else inf
    hand_gap = None
    if hand_depth is not None and depth_m is not None:
        hand_gap = np.where(hand_depth > 0, np.abs(np.nan_to_num(depth_m) - hand_depth), np.inf)
    bled = np.zeros_like(mask) if hand_gap is None else mask & (hand_gap < float(config["hand_surface_m"]))
    checked = _check_outline(mask & ~bled, depth_m, hand, config)
    uncertain = checked.uncertain | bled
    margin = config.get("occluder_in_front_m")
    occluded = None
    if depth_m is not None and margin is not None:
        step = float(config["same_surface_m"])
        hand_seen = None if hand_gap is None else hand_gap < float(margin)  # occludes as its mesh
        occluded = in_front_of(checked.object, depth_m, float(margin), step, hand_seen) & ~uncertain
    return CheckedMask(checked.object, uncertain, occluded)


def in_front_of(
    surface: np.ndarray, depth_m: np.ndarray, margin_m: float, step_m: float, known: np.ndarray | None = None
) -> np.ndarray:
    """(H, W) bool: pixels outside `surface` (bool) and outside `known` (bool: occluders handled
    elsewhere, the posed hand) on something in front of the surface: each smooth region (depth
    steps of at most step_m between 4-neighbours) that somewhere lies nearer the camera than the
    nearest surface pixel by more than margin_m. Regions, not pixels: an occluder's depth varies as
    much as the object's (a tilted box spans 8 cm), so a margin alone misses its far side."""
    depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    seen = surface & (depth > 0)
    if not seen.any():
        return np.zeros(surface.shape, bool)
    rows, columns = distance_transform_edt(~seen, return_indices=True)[1]
    outside = ~surface & (depth > 0)
    if known is not None:
        outside &= ~np.asarray(known, bool)
    ahead = outside & (depth < depth[rows, columns] - margin_m)
    if not ahead.any():
        return ahead
    return _smooth_regions_reaching(outside, depth, step_m, ahead)


def _smooth_regions_reaching(region: np.ndarray, depth: np.ndarray, step_m: float, seeds: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of `region` connected to a seed through 4-neighbours of `region`
    whose depths differ by at most step_m (connected components of that pixel graph, scipy)."""
    index = np.full(region.shape, -1)
    index[region] = np.arange(int(region.sum()))
    first, second = [], []
    for this, that in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ):
        joined = region[this] & region[that] & (np.abs(depth[this] - depth[that]) <= step_m)
        first.append(index[this][joined])
        second.append(index[that][joined])
    first, second = np.concatenate(first), np.concatenate(second)
    count = int(region.sum())
    graph = coo_matrix((np.ones(len(first), bool), (first, second)), shape=(count, count))
    labels = connected_components(graph, directed=False)[1]
    reached = np.zeros(count, bool)
    reached[np.isin(labels, np.unique(labels[index[seeds]]))] = True
    result = np.zeros(region.shape, bool)
    result[region] = reached
    return result


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
