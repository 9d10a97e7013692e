"""Occluded copies of a frame for the benchmark's occlusion sweep: a share of the object's
silhouette hidden behind an unknown occluder, up to the camera being off.

The hidden pixels are the share of the mask's pixels farthest along a direction drawn per frame
(an occluder coming in from one side); there the mask says no object, the depth is the
occluder's (3 cm in front of the object) and the colour a flat grey. At 100 % the camera gives
nothing: no mask, no depth, a black image (the refiner's touch-only case).
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from tactile_pose_refiner.core.frame import Frame

OCCLUDER_IN_FRONT_MM = 30
OCCLUDER_GREY = 128


def occluded(frame: Frame, share: float, key: str) -> Frame:
    """`frame` with `share` (0..1) of its object silhouette hidden; the direction the occluder
    comes from is drawn from `key` (the same frame is occluded the same way)."""
    if share <= 0.0:
        return frame
    if share >= 1.0 or frame.mask is None:
        return camera_off(frame)
    rows, columns = np.nonzero(frame.mask > 0)
    if len(rows) == 0:
        return frame
    angle = np.random.default_rng(zlib.crc32(key.encode())).uniform(0.0, 2.0 * np.pi)
    along = rows * np.sin(angle) + columns * np.cos(angle)
    hidden = np.argsort(-along)[: int(round(share * len(rows)))]
    rows, columns = rows[hidden], columns[hidden]
    mask, depth, rgb = frame.mask.copy(), frame.depth_mm.copy(), frame.rgb.copy()
    mask[rows, columns] = 0
    valid = depth[rows, columns] > 0
    in_front = depth[rows, columns].astype(np.int64) - OCCLUDER_IN_FRONT_MM
    depth[rows, columns] = np.where(valid, np.clip(in_front, 1, None), 0).astype(depth.dtype)
    rgb[rows, columns] = OCCLUDER_GREY
    return replace(frame, mask=mask, depth_mm=depth, rgb=rgb)


def camera_off(frame: Frame) -> Frame:
    """The frame as a refiner without a camera sees it: touch, joints and the hand's pose only."""
    return replace(
        frame,
        rgb=np.zeros_like(frame.rgb),
        depth_mm=np.zeros_like(frame.depth_mm),
        mask=None if frame.mask is None else np.zeros_like(frame.mask),
    )
