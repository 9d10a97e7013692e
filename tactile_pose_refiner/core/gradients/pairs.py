"""Paper Eq. 2: mean squared distance from observed points to the mesh (+ from the mesh's
triangles to the nearest observed point), differentiable w.r.t. the object pose.

All-pairs point-triangle distances cost seconds (team notes), so the pairs are found without
gradient (Warp BVH for points -> triangles, a k-d tree for triangles -> points) and only the
chosen pairs are re-evaluated in torch. Each pair keeps the barycentric weights of its closest
point: the minimum over a fixed simplex has the argmin's gradient (Danskin), so the gradient
is exact, not an approximation.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch
import trimesh

from tactile_pose_refiner.core.geometry import open3d_mesh, rotation_angle
from tactile_pose_refiner.core.gradients.base import SourceLoss, degraded, pose_array
from tactile_pose_refiner.core.scene.distance import MeshDistance, NearestPoints

MM = 1000.0  # losses are reported in mm^2 so that the sources have comparable scales


@dataclass(frozen=True)
class PairSearch:
    """How Eq. 2 is evaluated. mesh_to_points: 'all' triangles (the paper's literal form),
    'visible' (triangles the camera sees at the current estimate, by ray casting with the hand as
    occluder: a partial view has no points on the back or under the fingers, so 'all' drags the
    mesh toward the visible points — measured 15-30 mm off from a 10 mm start), or 'none' (point
    term only: a handful of taxels cannot pull every triangle). The visible set is recomputed
    when the pose has moved more than refresh_m / refresh_rad since the last ray cast."""

    mesh_to_points: str = "visible"
    max_distance_m: float = 0.1  # pairs farther than this are ignored (outliers)
    refresh_m: float = 0.002
    refresh_rad: float = 0.035
    max_triangles: int = 0  # > 0: the triangle term uses at most this many of the chosen
    # triangles (a fixed random subset: a mean over triangles
    # estimated from a sample, at a cost that no longer grows
    # with the scan's resolution)
    max_incidence_rad: float = np.pi / 2  # 'visible': triangles seen more obliquely than this
    # leave the triangle term (see Visibility)

    def __post_init__(self) -> None:
        if self.mesh_to_points not in ("all", "visible", "none"):
            raise ValueError(f"mesh_to_points must be all|visible|none, got {self.mesh_to_points!r}")


class SeenOccluders:
    """What the depth image shows in front of the object (core/mask_check.py, occluded pixels):
    a point that projects onto such a pixel and lies behind its depth is hidden from the camera.
    Occluders that no mesh describes (a tool, another object) hide triangles as the hand does."""

    def __init__(self, camera, depth_m: np.ndarray, occluded: np.ndarray) -> None:
        depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        self.camera = camera
        self.depth = np.where(np.asarray(occluded, bool), depth, 0.0)

    def hide(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame points -> (N,) bool: behind a seen occluder."""
        hidden = np.zeros(len(points), bool)
        ahead = points[:, 2] > 0.0
        pixels = np.rint(self.camera.project(points[ahead])).astype(np.int64)
        height, width = self.depth.shape
        inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height)
        occluder = np.zeros(len(pixels))
        occluder[inside] = self.depth[pixels[inside, 1], pixels[inside, 0]]
        hidden[ahead] = (occluder > 0.0) & (occluder < points[ahead, 2])
        return hidden


class Visibility:
    """Which triangles a camera at the origin sees (ray cast to each front-facing triangle's
    centre, Open3D/Embree), with optional fixed occluders (a mesh, and those only the depth image
    shows); cached while the pose stays close."""

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        occluders: trimesh.Trimesh | None,
        seen_occluders: SeenOccluders | None = None,
    ) -> None:
        self.vertices, self.faces, self.occluders = vertices, faces, occluders
        self.seen_occluders = seen_occluders
        self.centres = vertices[faces].mean(axis=1)
        # unnormalised normals: only their sign against the view ray matters (degenerate = 0)
        corners = vertices[faces]
        self.normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.hold = False  # True: keep the cached set wherever the pose is (see held())

    @contextmanager
    def held(self):
        """Keep the current visible set while evaluating nearby poses (candidate steps): a
        re-cast in between would change the loss by more than the step does."""
        self.hold = True
        try:
            yield
        finally:
            self.hold = False

    def visible(self, R: np.ndarray, t: np.ndarray, search: PairSearch) -> np.ndarray:
        """Indices of the visible triangles at pose (R, t)."""
        if self._cache is not None and self.hold:
            return self._cache[2]
        if self._cache is not None:
            cached_R, cached_t, indices = self._cache
            angle = rotation_angle(cached_R, R)
            if np.linalg.norm(cached_t - t) <= search.refresh_m and angle <= search.refresh_rad:
                return indices
        indices = self._ray_cast(R, t, search.max_incidence_rad)
        self._cache = (R.copy(), t.copy(), indices)
        return indices

    def _ray_cast(self, R: np.ndarray, t: np.ndarray, max_incidence_rad: float) -> np.ndarray:
        """Front-facing triangles seen at most max_incidence_rad off their normal, whose centre's
        ray hits them first. Near the silhouette the camera samples a surface from one side only:
        a grazing triangle's nearest observed point lies towards the camera-facing side, and the
        triangle term then pulls the whole object towards the camera."""
        centres = self.centres @ R.T + t
        facing = -np.einsum("nc,nc->n", self.normals @ R.T, centres)
        lengths = np.linalg.norm(self.normals, axis=1) * np.linalg.norm(centres, axis=1)
        front = np.nonzero((facing > 0.0) & (facing >= np.cos(max_incidence_rad) * lengths))[0]
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(open3d_mesh(self.vertices @ R.T + t, self.faces))  # geometry id 0
        if self.occluders is not None and len(self.occluders.faces):
            scene.add_triangles(open3d_mesh(self.occluders.vertices, self.occluders.faces))
        directions = centres[front] / np.linalg.norm(centres[front], axis=1, keepdims=True)
        rays = np.concatenate([np.zeros_like(directions), directions], axis=1).astype(np.float32)
        hit = scene.cast_rays(o3d.core.Tensor(rays))
        seen = (hit["geometry_ids"].numpy() == 0) & (hit["primitive_ids"].numpy() == front)
        if self.seen_occluders is not None:
            seen &= ~self.seen_occluders.hide(centres[front])
        return front[seen]


def huber(residual: torch.Tensor, delta: float | None) -> torch.Tensor:
    """residual^2 up to |residual| = delta, then growing linearly (slope 2 delta); None: squares.
    (torch's Huber loss is half of that: 0.5 x^2 inside.)"""
    if delta is None:
        return residual.pow(2)
    return 2.0 * torch.nn.functional.huber_loss(residual, torch.zeros_like(residual), reduction="none", delta=delta)


def finite_points(points: np.ndarray) -> np.ndarray:
    """(N, 3) float64 rows of `points` without non-finite coordinates."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points[np.isfinite(points).all(axis=1)]


class PointMeshDistance:
    """Eq. 2 between fixed camera-frame points (N, 3) and an object mesh (object frame)."""

    def __init__(
        self,
        mesh: trimesh.Trimesh,
        points: np.ndarray,
        search: PairSearch,
        distance: MeshDistance | None = None,
        occluders: trimesh.Trimesh | None = None,
        dense_points: np.ndarray | None = None,
        huber_mm: float | None = None,
        seen_occluders: SeenOccluders | None = None,
    ) -> None:
        """points: those of the point term; dense_points (default: points): where the triangle
        term looks for each triangle's nearest point. A subsample is enough for the point term,
        but its spacing would become the triangle term's distance. huber_mm: pair distances
        beyond this grow linearly, not squared (None: squares)."""
        self.points = finite_points(points)
        self.huber_mm = huber_mm
        self.dense_points = self.points if dense_points is None else finite_points(dense_points)
        self.vertices = np.asarray(mesh.vertices, dtype=np.float64)
        self.faces = np.asarray(mesh.faces, dtype=np.int64)
        self.search = search
        self.distance = distance or MeshDistance(self.vertices, self.faces)
        self.nearest_points = NearestPoints(self.dense_points)
        self.visibility = Visibility(self.vertices, self.faces, occluders, seen_occluders)
        self.triangle_centres = self.visibility.centres
        # every triangle's rank in one fixed random order: subsets stay the same between poses
        self.rank = np.random.default_rng(0).permutation(len(self.faces))

    def pairs(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """At pose T (4, 4): (point-term points (A, 3), their closest surface points in the object
        frame (A, 3)), (triangle-term points (B, 3), the centres of those triangles (B, 3))."""
        R, t = T[:3, :3], T[:3, 3]
        hit, closest, _ = self.closest_points((self.points - t) @ R)
        return (self.points[hit], closest, *self._triangle_pairs(R, t))

    def closest_points(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 3) object-frame points -> which have a surface point within reach (N,) bool,
        those closest points (A, 3) and their faces (A,)."""
        face, _ = self.distance.closest(local, self.search.max_distance_m)
        hit = face >= 0
        # The BVH search runs in float32; the closest point is re-derived in float64 on the
        # chosen face so the loss is smooth down to finite-difference step sizes.
        closest = trimesh.triangles.closest_point(self.vertices[self.faces[face[hit]]], local[hit])
        return hit, closest, face[hit]

    def _triangle_pairs(self, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        empty = np.zeros((0, 3))
        if self.search.mesh_to_points == "none" or self.nearest_points.count == 0:
            return empty, empty
        centres = self.triangle_centres @ R.T + t
        selected = np.arange(len(self.faces))
        if self.search.mesh_to_points == "visible":
            selected = self.visibility.visible(R, t, self.search)
        if 0 < self.search.max_triangles < len(selected):
            selected = selected[np.sort(np.argsort(self.rank[selected])[: self.search.max_triangles])]
        # Triangle-to-point distance measured at the triangle's centre (the scans' triangles are
        # ~2 mm across): min over points of a continuous function, so the loss stays continuous
        # (taking the point nearest the centre, then its distance to the whole triangle, jumps
        # whenever that point changes: finite differences saw 20 % errors).
        gap, nearest = self.nearest_points.query(centres[selected], self.search.max_distance_m)
        keep = np.isfinite(gap)
        return self.dense_points[nearest[keep]], self.triangle_centres[selected[keep]]

    def source_loss(self, rotation: torch.Tensor, translation: torch.Tensor, min_points: int, what: str) -> SourceLoss:
        """Eq. 2 as a source's result: degraded (zero weight) with fewer than min_points points
        or no pair within reach; `what` names the points in the status."""
        count = len(self.points)
        if count < min_points:
            return degraded(f"{count} {what} (< {min_points})", rotation, translation)
        value, pairs = self.loss(rotation, translation)
        if pairs == 0:
            return degraded(f"no {what} near the mesh", rotation, translation)
        return SourceLoss(value)

    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Eq. 2 in mm^2 at (R, t) and the number of pairs used."""
        point_term_points, point_term_closest, tri_points, tri_closest = self.pairs(pose_array(rotation, translation))
        value = torch.zeros((), dtype=rotation.dtype, device=rotation.device)
        for points, closest in ((point_term_points, point_term_closest), (tri_points, tri_closest)):
            if len(points):
                observed = torch.as_tensor(points, dtype=rotation.dtype, device=rotation.device)
                surface = torch.as_tensor(closest, dtype=rotation.dtype, device=rotation.device)
                residual = observed - (surface @ rotation.T + translation)
                # the offset keeps the distance's gradient finite at 0
                distance = torch.sqrt((residual * MM).pow(2).sum(dim=1) + 1e-18)
                value = value + huber(distance, self.huber_mm).mean()
        return value, len(point_term_points) + len(tri_points)
