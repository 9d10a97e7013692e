"""The object's outline at a pose, drawn on the camera image: how a person checks a pose by eye.

Shared by refiner_node's `refiner/overlay` image (RViz) and `tpr bench --report`'s overlays.
Outlines are drawn in order as rings just outside each silhouette, so a thin one drawn last
(the truth) stays visible inside a wide one (the refined pose) where the two agree.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

from tactile_pose_refiner.core.geometry import transform_points
from tactile_pose_refiner.core.gradients.render.base import mesh_silhouette
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.objects import ObjectModel

OUTLINE_COLOURS = {"initial": (230, 40, 40), "refined": (40, 220, 60), "truth": (60, 120, 255)}


def silhouette(model: ObjectModel, T_cam_obj: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """(H, W) bool: the pixels the object covers at T_cam_obj (exact ray cast)."""
    vertices = transform_points(np.asarray(T_cam_obj, dtype=float), model.geometry.vertices)
    return mesh_silhouette(vertices, model.geometry.faces, camera)


def draw_outlines(
    rgb: np.ndarray, model: ObjectModel, camera: PinholeCamera, outlines: list[tuple[np.ndarray, str, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """(image with each (T_cam_obj, colour key, width px) outline drawn in order, (H, W) bool of
    every silhouette: where to crop)."""
    image = np.array(rgb, dtype=np.uint8, copy=True)
    covered = np.zeros(image.shape[:2], dtype=bool)
    for T_cam_obj, key, width in outlines:
        if not np.isfinite(T_cam_obj).all():
            continue
        mask = silhouette(model, T_cam_obj, camera)
        image[binary_dilation(mask, iterations=width) & ~mask] = OUTLINE_COLOURS[key]
        covered |= mask
    return image, covered
