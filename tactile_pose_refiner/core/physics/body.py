"""Mass properties of a rigid object."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass(frozen=True)
class RigidBody:
    """Mass properties in the object frame: mass [kg], COM (3,) [m], inertia about the COM
    (3, 3) [kg m^2], radius [m] (COM to farthest vertex, turns rotation into a length)."""

    mass: float
    com: np.ndarray
    inertia: np.ndarray
    radius: float

    @classmethod
    def from_mesh(
        cls, mesh: trimesh.Trimesh, mass: float, com: np.ndarray | None = None, inertia: np.ndarray | None = None
    ) -> RigidBody:
        """From the convex hull (always closed, unlike many scans), scaled to `mass`; a declared
        centre of mass or inertia (a catalog's, from a URDF) replaces the hull's."""
        hull = mesh.convex_hull
        inertia = np.asarray(hull.moment_inertia) * (mass / hull.mass) if inertia is None else np.asarray(inertia)
        com = np.asarray(hull.center_mass) if com is None else np.asarray(com, dtype=np.float64)
        radius = float(np.linalg.norm(mesh.vertices - com, axis=1).max())
        return cls(float(mass), com, inertia, radius)
