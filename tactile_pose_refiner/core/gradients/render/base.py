"""Renderer interface of the rendering gradient: mesh + pose + intrinsics + region of interest ->
RGB, silhouette and depth images that are differentiable w.r.t. the pose.

Every backend renders only a region of interest (ROI) of the camera image, so the cost follows
the object's projected size, not the camera resolution. Images are premultiplied by the soft
silhouette over a black, zero-depth background: rgb = alpha * colour, depth = alpha * z. This is
what a soft rasteriser produces naturally, and it makes the loss continuous at silhouette edges.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from tactile_pose_refiner.core.geometry import open3d_mesh
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.objects import ObjectModel


class RenderInputError(ValueError):
    """The mesh has no renderable triangle (all degenerate) or a pose is unusable."""


@dataclass(frozen=True)
class Roi:
    """Pixel window of the camera image: columns u0 .. u0+width-1, rows v0 .. v0+height-1."""

    u0: int
    v0: int
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def crop(self, image: np.ndarray) -> np.ndarray:
        """(H, W, ...) camera image -> (height, width, ...) window."""
        return image[self.v0 : self.v0 + self.height, self.u0 : self.u0 + self.width]


def roi_around(
    vertices_obj: np.ndarray, T_cam_obj: np.ndarray, camera: PinholeCamera, margin_px: int, min_depth_m: float
) -> Roi | None:
    """Bounding box of the projection of (N, 3) object-frame vertices at T_cam_obj, grown by
    margin_px and clipped to the image. None when the object is (partly) behind the near plane
    or its box misses the image: the caller reports that as degraded input."""
    points = vertices_obj @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3]
    if not np.isfinite(points).all() or points[:, 2].min() < min_depth_m:
        return None
    pixels = camera.project(points)
    u0 = max(int(np.floor(pixels[:, 0].min())) - margin_px, 0)
    v0 = max(int(np.floor(pixels[:, 1].min())) - margin_px, 0)
    u1 = min(int(np.ceil(pixels[:, 0].max())) + margin_px, camera.width - 1)
    v1 = min(int(np.ceil(pixels[:, 1].max())) + margin_px, camera.height - 1)
    if u1 < u0 or v1 < v0:
        return None
    return Roi(u0, v0, u1 - u0 + 1, v1 - v0 + 1)


def mesh_silhouette(vertices_cam: np.ndarray, faces: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """(H, W) bool: pixels whose centre ray hits the mesh ((V, 3) camera-frame vertices, (F, 3)
    faces)."""
    return mesh_depth(vertices_cam, faces, camera) > 0.0


def mesh_depth(vertices_cam: np.ndarray, faces: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """(H, W) depth [m] of the mesh's nearest surface along each pixel's centre ray, 0 where it
    misses. Exact (Open3D/Embree ray cast); only the rays in the mesh's projected window are
    cast, all of them when the mesh crosses the camera plane (it then projects anywhere)."""
    import open3d as o3d  # here: only the hand's silhouette needs it

    depth = np.zeros((camera.height, camera.width))
    vertices_cam = np.asarray(vertices_cam, dtype=np.float64)
    in_front = vertices_cam[:, 2] > 1e-6
    if len(faces) == 0 or not in_front.any():
        return depth
    roi = Roi(0, 0, camera.width, camera.height)
    if in_front.all():
        roi = roi_around(vertices_cam, np.eye(4), camera, 0, 1e-6)
        if roi is None:
            return depth
    directions = roi.crop(camera.ray_directions()).reshape(-1, 3)  # z = 1: t along them is depth
    rays = np.concatenate([np.zeros_like(directions), directions], axis=1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(open3d_mesh(vertices_cam, faces))
    t_hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    roi.crop(depth)[...] = np.where(np.isfinite(t_hit), t_hit, 0.0).reshape(roi.height, roi.width)
    return depth


@dataclass
class Rendering:
    """One rendered ROI. rgb (h, w, 3) premultiplied colour in [0, 1]; silhouette (h, w) soft
    coverage in [0, 1]; depth (h, w) premultiplied camera z [m] (z = depth / silhouette)."""

    rgb: torch.Tensor
    silhouette: torch.Tensor
    depth: torch.Tensor
    roi: Roi


@dataclass
class RenderMesh:
    """A mesh ready for rasterisation, shared by the backends (numpy, object frame, metres).

    vertices (V, 3): seam vertices merged, so silhouette edges are found across texture seams.
    faces (F, 3) into vertices; faces_uv (F, 3) into uv (T, 2) (OBJ convention, v up) — the
    visual mesh's own corners, so each face keeps its texture coordinates across seams.
    texture (H, W, 3) float in [0, 1] or None; colors (V, 3) in [0, 1] (vertex colours, used
    when there is no texture). face_edges (F, 3): edge id of the corner pair (k, k+1);
    edge_count: number of unique edges. Degenerate triangles are dropped here.
    """

    vertices: np.ndarray
    faces: np.ndarray
    faces_uv: np.ndarray
    uv: np.ndarray
    texture: np.ndarray | None
    colors: np.ndarray
    face_edges: np.ndarray
    edge_count: int

    @classmethod
    def from_model(cls, model: ObjectModel, min_face_area_m2: float) -> RenderMesh:
        visual = model.visual
        vertices, merged = _merge_positions(np.asarray(visual.vertices, dtype=np.float64))
        faces_visual = np.asarray(visual.faces, dtype=np.int64)
        faces = merged[faces_visual]
        corners = vertices[faces]
        area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
        keep = (
            (area > min_face_area_m2)
            & (faces[:, 0] != faces[:, 1])
            & (faces[:, 1] != faces[:, 2])
            & (faces[:, 2] != faces[:, 0])
        )
        if not keep.any():
            raise RenderInputError(f"object '{model.object_id}': no non-degenerate triangle")
        faces, faces_visual = faces[keep], faces_visual[keep]
        textured = model.texture is not None and model.uv is not None
        uv = model.uv if textured else np.zeros((len(visual.vertices), 2))
        colors = np.zeros((len(vertices), 3))
        colors[merged] = model.vertex_colors()[:, :3] / 255.0  # seams share a colour
        face_edges, edge_count = _edge_ids(faces)
        return cls(
            vertices,
            faces,
            faces_visual,
            uv,
            model.texture / 255.0 if textured else None,
            colors,
            face_edges,
            edge_count,
        )


def _merge_positions(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge coincident vertices (texture seams): (V, 3) -> (M, 3) unique, (V,) index into them."""
    unique, inverse = trimesh.grouping.unique_rows(vertices, digits=9)
    return vertices[unique], np.asarray(inverse, dtype=np.int64)


def _edge_ids(faces: np.ndarray) -> tuple[np.ndarray, int]:
    """(F, 3) faces -> (F, 3) id of the undirected edge from corner k to corner k+1, count."""
    directed = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2)
    _, inverse = np.unique(np.sort(directed, axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse.reshape(-1, 3), int(inverse.max()) + 1


def front_facing(corners_cam: torch.Tensor) -> torch.Tensor:
    """(F, 3, 3) camera-frame triangle corners -> (F,) bool: the outward normal faces the camera
    (counter-clockwise faces, as in OBJ scans)."""
    normal = torch.linalg.cross(corners_cam[:, 1] - corners_cam[:, 0], corners_cam[:, 2] - corners_cam[:, 0])
    return (normal * corners_cam[:, 0]).sum(dim=1) < 0


def silhouette_edges(face_edges: torch.Tensor, edge_count: int, front: torch.Tensor) -> torch.Tensor:
    """(F, 3) edge ids and (F,) front-facing flags -> (F, 3) bool: the face's edge from corner k to
    k+1 lies on the silhouette (exactly one of the faces sharing it faces the camera)."""
    fronts_per_edge = torch.zeros(edge_count, dtype=torch.long, device=face_edges.device)
    fronts_per_edge.index_add_(0, face_edges.reshape(-1), front[:, None].expand(-1, 3).reshape(-1).long())
    return fronts_per_edge[face_edges] == 1


def project_vertices(
    vertices: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, camera: PinholeCamera, roi: Roi
) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, 3) object-frame vertices at pose (R, t) -> (V, 2) pixel coordinates (x, y) in the ROI
    (pixel centres at integers, OpenCV) and (V, 3) camera-frame points [m]."""
    points = vertices @ rotation.T + translation
    z = points[:, 2]
    x = camera.fx * points[:, 0] / z + (camera.cx - roi.u0)
    y = camera.fy * points[:, 1] / z + (camera.cy - roi.v0)
    return torch.stack([x, y], dim=1), points


class Renderer(ABC):
    """A differentiable renderer of one object model seen by one camera.

    Each backend states its edge model: `coverage(d)` is the silhouette value of a pixel whose
    centre lies d pixels outside (d < 0: inside) the exact silhouette, and edge_coverage its
    value at the edge, so `alpha >= edge_coverage` is the hard (pixel-centre) silhouette. The
    rendering source applies the same model to the observed mask, so a backend whose soft edge
    is one-sided (DEODR's overdraw) still has its loss minimum at the true pose.
    """

    name: str = "renderer"
    edge_coverage: float = 0.5

    def __init__(self, mesh: RenderMesh, camera: PinholeCamera) -> None:
        self.mesh = mesh
        self.camera = camera

    @abstractmethod
    def render(self, rotation: torch.Tensor, translation: torch.Tensor, roi: Roi, with_depth: bool = True) -> Rendering:
        """Pose T_cam_obj as (3, 3) rotation and (3,) translation [m] (autograd tensors) ->
        the ROI's Rendering on the renderer's device, differentiable w.r.t. the pose.
        with_depth=False allows a backend to skip the depth image (then zeros)."""

    @abstractmethod
    def coverage(self, signed_distance_px: np.ndarray) -> np.ndarray:
        """Signed distance [px] of pixel centres to the silhouette (+ outside) -> coverage."""

    def hard_silhouette(self, rendering: Rendering) -> np.ndarray:
        """(h, w) bool pixel-centre silhouette of a rendering."""
        return rendering.silhouette.detach().cpu().numpy() >= self.edge_coverage - 1e-3
