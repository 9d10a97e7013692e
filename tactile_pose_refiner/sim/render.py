"""Hard ray-cast renderer of the scene (object + hand) for the episode generator.

Open3D's RaycastingScene (Embree, multi-threaded CPU) gives per pixel the hit distance,
the geometry, the triangle and its barycentrics: exact depth, object/hand masks and the
texture lookup, with no GPU or display. It is independent of the differentiable renderers,
so it also serves as their reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import trimesh

from tactile_pose_refiner.core.geometry import open3d_mesh, transform_points
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.objects import ObjectModel

OBJECT, HAND = 0, 1


@dataclass
class RenderResult:
    rgb: np.ndarray  # (H, W, 3) uint8, noise-free
    depth_m: np.ndarray  # (H, W) float64, 0 where nothing is hit
    object_mask: np.ndarray  # (H, W) bool, visible object pixels
    object_full_mask: np.ndarray  # (H, W) bool, object pixels were the hand not there
    hand_mask: np.ndarray  # (H, W) bool

    @property
    def occlusion(self) -> float:
        """Share of the object's silhouette hidden by the hand (0 when the object is off-image)."""
        full = int(self.object_full_mask.sum())
        return 0.0 if full == 0 else 1.0 - int(self.object_mask.sum()) / full


class RaycastRenderer:
    def __init__(self, camera: PinholeCamera, background_rgb=(60, 64, 70), hand_rgb=(38, 38, 42)):
        self.camera = camera
        self.background = np.asarray(background_rgb, dtype=np.float64)
        self.hand_rgb = np.asarray(hand_rgb, dtype=np.float64)
        directions = camera.ray_directions().reshape(-1, 3)
        self.rays = o3d.core.Tensor(np.concatenate([np.zeros_like(directions), directions], axis=1).astype(np.float32))
        self.unit_directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)

    def render(self, model: ObjectModel, T_cam_obj: np.ndarray, hand_meshes: list[trimesh.Trimesh]) -> RenderResult:
        """Object at T_cam_obj and hand meshes already in the camera frame."""
        object_vertices = transform_points(T_cam_obj, model.visual.vertices)
        hand = trimesh.util.concatenate(hand_meshes) if hand_meshes else None
        hit = self._cast(object_vertices, model.visual.faces, hand)
        alone = self._cast(object_vertices, model.visual.faces, None)
        shape = (self.camera.height, self.camera.width)

        t_hit = hit["t_hit"].numpy()
        geometry = hit["geometry_ids"].numpy().astype(np.int64)
        is_hit = np.isfinite(t_hit)
        object_mask = is_hit & (geometry == OBJECT)
        hand_mask = is_hit & (geometry == HAND)
        rgb = np.broadcast_to(self.background, (len(t_hit), 3)).copy()
        rgb[object_mask] = self._object_colour(model, hit, object_mask)
        rgb[hand_mask] = self._hand_colour(hit, hand_mask)
        return RenderResult(
            rgb=np.clip(np.round(rgb), 0, 255).astype(np.uint8).reshape(*shape, 3),
            depth_m=np.where(is_hit, t_hit, 0.0).astype(np.float64).reshape(shape),
            object_mask=object_mask.reshape(shape),
            object_full_mask=np.isfinite(alone["t_hit"].numpy()).reshape(shape),
            hand_mask=hand_mask.reshape(shape),
        )

    def _cast(self, object_vertices, object_faces, hand) -> dict:
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(open3d_mesh(object_vertices, object_faces))  # id 0 = OBJECT
        if hand is not None:
            scene.add_triangles(open3d_mesh(hand.vertices, hand.faces))  # id 1 = HAND
        return scene.cast_rays(self.rays)

    def _object_colour(self, model: ObjectModel, hit: dict, mask: np.ndarray) -> np.ndarray:
        faces = model.visual.faces[hit["primitive_ids"].numpy()[mask].astype(np.int64)]
        bary_uv = hit["primitive_uvs"].numpy()[mask].astype(np.float64)
        weights = np.stack([1.0 - bary_uv.sum(axis=1), bary_uv[:, 0], bary_uv[:, 1]], axis=1)
        if model.texture is None or model.uv is None:
            colours = model.vertex_colors().astype(np.float64)
            return np.einsum("nk,nkc->nc", weights, colours[faces])
        uv = np.einsum("nk,nkc->nc", weights, model.uv[faces])
        return model.sample_texture(uv).astype(np.float64)  # unlit: texture as seen

    def _hand_colour(self, hit: dict, mask: np.ndarray) -> np.ndarray:
        normals = hit["primitive_normals"].numpy()[mask].astype(np.float64)
        facing = np.abs(np.einsum("nc,nc->n", normals, self.unit_directions[mask]))
        return self.hand_rgb[None, :] * (0.5 + 0.5 * facing[:, None])
