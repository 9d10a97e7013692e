"""The Allegro hand: URDF kinematics (differentiable FK), joint-name mapping, link surfaces.

Frames: link poses are T_base_link (hand base_link); callers place the hand in the camera
frame with T_camera_base.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import trimesh

from tactile_pose_refiner.core.resources import ResourceError, load_config, share_dir
from tactile_pose_refiner.core.scene.distance import MeshDistance
from tactile_pose_refiner.core.scene.kinematics import HandKinematics, load_urdf

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LinkGeometry:
    """Collision surface of one link in its own frame: a watertight trimesh."""

    link: str
    mesh: trimesh.Trimesh


@dataclass(frozen=True)
class PosedHand:
    """The hand in one configuration, in one frame (usually the camera's), metres.

    link_meshes: link -> watertight collision mesh; surface_points/normals (N, 3)."""

    link_meshes: dict[str, trimesh.Trimesh]
    surface_points: np.ndarray
    surface_normals: np.ndarray
    T_frame_base: np.ndarray  # (4, 4) where the hand base is in this frame
    link_poses: dict[str, np.ndarray]  # link -> (4, 4) T_base_link
    correction: object | None = None  # the HandCorrection that placed it (core/scene/hand_fit.py), if any

    @cached_property
    def mesh(self) -> trimesh.Trimesh:
        """All links in one mesh (links overlap at the joints; not a boolean union)."""
        return trimesh.util.concatenate(list(self.link_meshes.values()))

    @cached_property
    def distance(self) -> MeshDistance:
        """Distances to the hand surface; the winding-number sign is right for overlapping links."""
        return MeshDistance(self.mesh.vertices, self.mesh.faces)


@dataclass(frozen=True)
class HandUnusable:
    """A frame's hand that cannot be posed (bad joint states, no calibration), and why."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def hand_mesh(posed: PosedHand | HandUnusable | None) -> trimesh.Trimesh | None:
    """The hand's mesh of a frame, or None where the hand is unusable or unknown (None): what
    occludes the object in a view."""
    return posed.mesh if isinstance(posed, PosedHand) else None


class HandModel:
    """Kinematic chain + collision geometry of the hand.

    joint_names: URDF joint order of every configuration vector q (16 for the Allegro).
    """

    def __init__(
        self,
        urdf_path: str | Path,
        joint_name_maps: Mapping[str, Mapping[str, str]] | None = None,
        package_dirs: Mapping[str, str] | None = None,
    ) -> None:
        self.urdf_path = Path(urdf_path)
        self.kinematics = HandKinematics(self.urdf_path, joint_name_maps)  # reads it; prefix removed
        self.joint_names: list[str] = self.kinematics.joint_names
        self.lower, self.upper, self.name_map = self.kinematics.lower, self.kinematics.upper, self.kinematics.name_map
        self.links = self._load_link_geometry(package_dirs or {})
        self._surface_samples: dict[float, dict[str, tuple[np.ndarray, np.ndarray]]] = {}

    @classmethod
    def from_config(cls, name: str = "hand") -> HandModel:
        config = load_config(name)
        urdf = Path(config["urdf"])
        if not urdf.is_absolute():
            urdf = share_dir() / urdf
        return cls(urdf, config.get("joint_name_maps"), config.get("package_dirs"))

    # --- configurations -------------------------------------------------------------------
    def joint_vector(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """A JointState's (names, positions) in any configured naming -> q (16,) in URDF order
        (HandKinematics.joint_vector: raises HandInputError on unusable joint states)."""
        return self.kinematics.joint_vector(names, positions)

    # --- kinematics -----------------------------------------------------------------------
    def link_poses_torch(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """q (16,) tensor -> link name -> (4, 4) T_base_link; differentiable in q."""
        return self.kinematics.link_poses_torch(q)

    def link_poses(self, q: np.ndarray) -> dict[str, np.ndarray]:
        """q (16,) -> link name -> (4, 4) T_base_link (float64)."""
        return self.kinematics.link_poses(q)

    # --- geometry -------------------------------------------------------------------------
    def meshes(self, q: np.ndarray, T_frame_base: np.ndarray | None = None) -> dict[str, trimesh.Trimesh]:
        """Collision meshes of every link with geometry, posed in the frame of T_frame_base (default: base)."""
        return self._posed_meshes(self.link_poses(q), np.eye(4) if T_frame_base is None else T_frame_base)

    def _posed_meshes(self, poses: dict[str, np.ndarray], T_frame_base: np.ndarray) -> dict[str, trimesh.Trimesh]:
        return {
            link: geometry.mesh.copy().apply_transform(T_frame_base @ poses[link])
            for link, geometry in self.links.items()
        }

    def posed(self, q: np.ndarray, T_frame_base: np.ndarray, spacing: float) -> PosedHand:
        """The hand at configuration q placed by T_frame_base: link meshes and surface points."""
        poses = self.link_poses(q)
        points, normals = [], []
        for link, (link_points, link_normals) in self.surface_points(spacing).items():
            T = T_frame_base @ poses[link]
            points.append(link_points @ T[:3, :3].T + T[:3, 3])
            normals.append(link_normals @ T[:3, :3].T)
        return PosedHand(
            self._posed_meshes(poses, T_frame_base),
            np.concatenate(points),
            np.concatenate(normals),
            np.asarray(T_frame_base, dtype=np.float64),
            poses,
        )

    def surface_points(self, spacing: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """link -> (points (N, 3), outward normals (N, 3)) about `spacing` apart, link frame.
        Cached per spacing (sampling is deterministic)."""
        if spacing not in self._surface_samples:
            self._surface_samples[spacing] = self._sample_surfaces(spacing)
        return self._surface_samples[spacing]

    def _sample_surfaces(self, spacing: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        samples = {}
        for link, geometry in self.links.items():
            count = max(8, int(np.ceil(geometry.mesh.area / spacing**2)))
            points, faces = trimesh.sample.sample_surface_even(geometry.mesh, count, seed=0)
            samples[link] = (np.asarray(points), geometry.mesh.face_normals[faces])
        return samples

    def _load_link_geometry(self, package_dirs: Mapping[str, str]) -> dict[str, LinkGeometry]:
        robot = load_urdf(self.kinematics.urdf_text).robot
        links = {}
        for link in robot.links:
            parts = [self._collision_mesh(c, package_dirs) for c in link.collisions]
            parts = [p for p in parts if p is not None]
            if parts:
                links[link.name] = LinkGeometry(link.name, trimesh.util.concatenate(parts))
        if not links:
            raise ResourceError(f"hand URDF {self.urdf_path} has no collision geometry")
        return links

    def _collision_mesh(self, collision, package_dirs) -> trimesh.Trimesh | None:
        geometry = collision.geometry
        if geometry.box is not None:
            mesh = trimesh.creation.box(extents=geometry.box.size)
        elif geometry.sphere is not None:
            mesh = trimesh.creation.icosphere(subdivisions=3, radius=geometry.sphere.radius)
        elif geometry.cylinder is not None:
            mesh = trimesh.creation.cylinder(
                radius=geometry.cylinder.radius, height=geometry.cylinder.length, sections=24
            )
        elif geometry.mesh is not None:
            path = self._resolve(geometry.mesh.filename, package_dirs)
            try:
                mesh = trimesh.load(path, force="mesh")
            except Exception as exc:
                raise ResourceError(f"cannot load hand collision mesh {path}: {exc}") from exc
            if len(mesh.faces) == 0:
                raise ResourceError(f"hand collision mesh {path} holds no triangles")
            if geometry.mesh.scale is not None:
                mesh.apply_scale(geometry.mesh.scale)
        else:
            return None
        origin = collision.origin if collision.origin is not None else np.eye(4)
        return mesh.apply_transform(origin)

    def _resolve(self, filename: str, package_dirs: Mapping[str, str]) -> Path:
        match = re.match(r"package://([^/]+)/(.*)", filename)
        if match:
            package, rest = match.groups()
            if package in package_dirs:
                return Path(package_dirs[package]) / rest
            for parent in self.urdf_path.resolve().parents:  # <pkg>/urdf/x.urdf layouts
                if parent.name == package:
                    return parent / rest
            return self.urdf_path.parent / rest
        path = Path(filename.removeprefix("file://"))
        return path if path.is_absolute() else self.urdf_path.parent / path
