"""Signed distance from points to a triangle mesh (Warp BVH queries, CPU or CUDA).

The sign comes from the generalized winding number, the one sign that stays right on the
non-watertight YCB scans (a parity or normal test flips inside small holes). Warp's BVH
query is used instead of trimesh.proximity, which is ~200x slower here (team notes).
"""

from __future__ import annotations

import numpy as np
import open3d as o3d
import warp as wp

wp.config.quiet = True


@wp.kernel
def _signed_distance(
    mesh: wp.uint64,
    points: wp.array(dtype=wp.vec3),
    max_distance: float,
    distance: wp.array(dtype=float),
    closest: wp.array(dtype=wp.vec3),
    normal: wp.array(dtype=wp.vec3),
):
    tid = wp.tid()
    point = points[tid]
    query = wp.mesh_query_point_sign_winding_number(mesh, point, max_distance, 2.0, 0.5)
    if query.result:
        nearest = wp.mesh_eval_position(mesh, query.face, query.u, query.v)
        distance[tid] = wp.length(point - nearest) * query.sign
        closest[tid] = nearest
        normal[tid] = wp.mesh_eval_face_normal(mesh, query.face)
    else:
        distance[tid] = max_distance
        closest[tid] = point
        normal[tid] = wp.vec3(0.0, 0.0, 0.0)


@wp.kernel
def _closest_point(
    mesh: wp.uint64,
    points: wp.array(dtype=wp.vec3),
    max_distance: float,
    face: wp.array(dtype=int),
    barycentric: wp.array(dtype=wp.vec3),
):
    tid = wp.tid()
    query = wp.mesh_query_point_no_sign(mesh, points[tid], max_distance)
    if query.result:
        face[tid] = query.face
        barycentric[tid] = wp.vec3(query.u, query.v, 1.0 - query.u - query.v)
    else:
        face[tid] = -1


class MeshDistance:
    """Signed distances to one mesh, in the mesh's own frame. Positive outside, metres."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, device: str = "cpu") -> None:
        wp.init()
        self.device = device
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self._points = wp.array(np.asarray(vertices, dtype=np.float32), dtype=wp.vec3, device=device)
        self._faces = wp.array(np.asarray(faces, dtype=np.int32).ravel(), dtype=wp.int32, device=device)
        self.mesh = wp.Mesh(points=self._points, indices=self._faces)

    def query(self, points: np.ndarray, max_distance: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 3) points -> signed distance (N,), closest surface point (N, 3), face normal (N, 3).

        Points farther than max_distance get +max_distance (treated as outside).
        """
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        count = len(points)
        if count == 0:
            return np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3))
        query_points = wp.array(points, dtype=wp.vec3, device=self.device)
        distance = wp.zeros(count, dtype=float, device=self.device)
        closest = wp.zeros(count, dtype=wp.vec3, device=self.device)
        normal = wp.zeros(count, dtype=wp.vec3, device=self.device)
        wp.launch(
            _signed_distance,
            dim=count,
            device=self.device,
            inputs=[self.mesh.id, query_points, float(max_distance), distance, closest, normal],
        )
        return (
            distance.numpy().astype(np.float64),
            closest.numpy().astype(np.float64),
            normal.numpy().astype(np.float64),
        )

    def closest(self, points: np.ndarray, max_distance: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) points -> nearest face (N,) int (-1 beyond max_distance) and the barycentric
        weights (N, 3) of the nearest surface point on it (weights of the face's 3 vertices)."""
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        if len(points) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 3))
        query_points = wp.array(points, dtype=wp.vec3, device=self.device)
        face = wp.zeros(len(points), dtype=int, device=self.device)
        barycentric = wp.zeros(len(points), dtype=wp.vec3, device=self.device)
        wp.launch(
            _closest_point,
            dim=len(points),
            device=self.device,
            inputs=[self.mesh.id, query_points, float(max_distance), face, barycentric],
        )
        return face.numpy().astype(np.int64), barycentric.numpy().astype(np.float64)

    def unsigned(self, points: np.ndarray, max_distance: float) -> np.ndarray:
        """(N, 3) points -> (N,) distance to the surface (no sign: fast); max_distance where
        farther."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        face, weights = self.closest(points, max_distance)
        distance = np.full(len(points), float(max_distance))
        hit = face >= 0
        nearest = np.einsum("nk,nkc->nc", weights[hit], self.vertices[self.faces[face[hit]]])
        distance[hit] = np.linalg.norm(points[hit] - nearest, axis=1)
        return distance


class NearestPoints:
    """Exact nearest neighbours among fixed points (N, 3), through Open3D's nanoflann index.
    Not scipy's cKDTree: 1500 queries 2.5 cm from 28k points (a noisy start's triangles) took it
    50 ms against 2.6 ms here (at the truth 1.9 vs 0.9 ms), with the same neighbours."""

    def __init__(self, points: np.ndarray) -> None:
        self.count = len(points)
        self._index = o3d.core.nns.NearestNeighborSearch(
            o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float64))
        )
        if self.count:
            self._index.knn_index()

    def query(self, queries: np.ndarray, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
        """(M, 3) -> distance to the nearest point (M,), inf beyond max_distance (or with no
        points), and its index (M,) int (meaningless where the distance is inf)."""
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float64).reshape(-1, 3))
        if self.count == 0 or len(queries) == 0:
            return np.full(len(queries), np.inf), np.zeros(len(queries), dtype=np.int64)
        index, squared = self._index.knn_search(o3d.core.Tensor(queries), 1)
        distance = np.sqrt(squared.numpy()[:, 0])
        distance[distance > max_distance] = np.inf
        return distance, index.numpy()[:, 0].astype(np.int64)
