"""The object model as estimators use it: surface samples with normals and texture colours, a
KD-tree over them, and the object's symmetry group (found on the geometry, so any scan works)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.geometry import rotation_angle
from tactile_pose_refiner.core.scene.objects import ObjectModel


@dataclass
class ModelCloud:
    """points/normals (M, 3) in the object frame, colours (M, 3) in 0..1, centroid (3,),
    radius: median distance of the surface from the centroid; symmetries (S, 4, 4): object-frame
    transforms that map the surface onto itself (identity first)."""

    object_id: str
    points: np.ndarray
    normals: np.ndarray
    colours: np.ndarray
    centroid: np.ndarray
    radius: float
    symmetries: np.ndarray
    tree: cKDTree

    @classmethod
    def build(cls, model: ObjectModel, config: dict, symmetry: dict) -> ModelCloud:
        points, normals, colours = coloured_samples(model, int(config["surface_points"]), int(config["seed"]))
        centroid = points.mean(axis=0)
        radius = float(np.median(np.linalg.norm(points - centroid, axis=1)))
        tree = cKDTree(points)
        group = symmetry_group(points, tree, centroid, symmetry)
        return cls(model.object_id, points, normals, colours, centroid, radius, group, tree)

    @property
    def symmetric(self) -> bool:
        return len(self.symmetries) > 1


def camera_facing(points, normals, colours, T: np.ndarray, camera):
    """Object-frame samples posed by T: the camera-facing ones (camera frame), their colours,
    which of them land in the image, and those pixels (u, v)."""
    points = points @ T[:3, :3].T + T[:3, 3]
    facing = np.einsum("ij,ij->i", normals @ T[:3, :3].T, points) < 0.0
    points, colours = points[facing], colours[facing]
    pixels = np.round(camera.project(points)).astype(np.int64) if len(points) else np.zeros((0, 2), int)
    inside = (
        (points[:, 2] > 0)
        & (pixels[:, 0] >= 0)
        & (pixels[:, 0] < camera.width)
        & (pixels[:, 1] >= 0)
        & (pixels[:, 1] < camera.height)
    )
    return points, colours, inside, pixels[inside, 0], pixels[inside, 1]


def colour_cost(points, normals, colours, T, camera, rgb, depth_m, depth_tolerance_m: float, min_points: int = 10):
    """Mean absolute difference of mean-removed colours (shading and exposure shift colours)
    over the camera-facing samples whose depth agrees with the scene's (the others are hidden);
    inf when fewer than min_points are seen."""
    posed, colours, inside, u, v = camera_facing(points, normals, colours, T, camera)
    matching = np.abs(depth_m[v, u] - posed[inside, 2]) < depth_tolerance_m
    if matching.sum() < min_points:
        return np.inf
    seen = rgb[v[matching], u[matching]].astype(np.float64) / 255.0
    expected = colours[inside][matching]
    return float(np.abs((seen - seen.mean(0)) - (expected - expected.mean(0))).mean())


def coloured_samples(model: ObjectModel, count: int, seed: int) -> tuple[np.ndarray, ...]:
    visual = model.visual
    points, faces, barycentric = _sample(visual, count, seed)
    normals = visual.face_normals[faces]
    if model.texture is not None and model.uv is not None:
        uv = np.einsum("nk,nkd->nd", barycentric, model.uv[visual.faces[faces]])
        colours = model.sample_texture(uv).astype(np.float64) / 255.0
    else:
        colours = model.vertex_colors()[visual.faces[faces][:, 0]].astype(np.float64) / 255.0
    return points, normals, colours


def _sample(mesh: trimesh.Trimesh, count: int, seed: int):
    points, faces = trimesh.sample.sample_surface(mesh, count, seed=seed)
    barycentric = trimesh.triangles.points_to_barycentric(mesh.triangles[faces], points)
    return points, faces, barycentric


def symmetry_group(points: np.ndarray, tree: cKDTree, centroid: np.ndarray, config: dict) -> np.ndarray:
    """Rotations about the principal axes through the centroid under which the surface samples
    land on the surface (mean distance < tolerance), closed into a group; (S, 4, 4), identity
    first. A continuous axis (a can) contributes `continuous_samples` equally spaced turns."""
    tolerance = float(config["tolerance_m"])
    _, _, axes = np.linalg.svd(points - centroid, full_matrices=False)
    generators = []
    for axis in axes:
        turn = lambda degrees: Rotation.from_rotvec(np.radians(degrees) * axis).as_matrix()  # noqa: E731
        if turns_onto_itself(points, tree, centroid, axis, config["continuous_test_deg"], tolerance):
            count = int(config["continuous_samples"])
            generators.append(turn(360.0 / count))
            continue
        for order in sorted(config["orders"], reverse=True):
            if maps_onto_itself(points, tree, centroid, turn(360.0 / order), tolerance):
                generators.append(turn(360.0 / order))
                break
    rotations = _closure(generators, int(config["max_group_size"]))
    group = np.tile(np.eye(4), (len(rotations), 1, 1))
    group[:, :3, :3] = rotations
    group[:, :3, 3] = centroid - rotations @ centroid  # about the centroid
    return group


def maps_onto_itself(
    points: np.ndarray, tree: cKDTree, centre: np.ndarray, rotation: np.ndarray, tolerance: float
) -> bool:
    """Do surface samples turned by rotation about centre land on the surface (tree over the
    samples) within tolerance, on average?"""
    moved = (points - centre) @ rotation.T + centre
    return float(tree.query(moved)[0].mean()) < tolerance


def turns_onto_itself(points, tree, centre, axis: np.ndarray, angles_deg, tolerance: float) -> bool:
    """A continuous symmetry about axis through centre: every test angle maps the surface onto itself."""
    return all(
        maps_onto_itself(points, tree, centre, Rotation.from_rotvec(np.radians(angle) * axis).as_matrix(), tolerance)
        for angle in angles_deg
    )


def _closure(generators: list[np.ndarray], limit: int) -> np.ndarray:
    """The group the generators make (products until nothing new, up to `limit` elements)."""
    elements = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier and len(elements) < limit:
        fresh = []
        for element in frontier:
            for generator in generators:
                product = generator @ element
                if all(_angle_deg(product, known) > 1.0 for known in elements):
                    elements.append(product)
                    fresh.append(product)
                    if len(elements) >= limit:
                        break
        frontier = fresh
    return np.stack(elements)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(rotation_angle(a, b)))
