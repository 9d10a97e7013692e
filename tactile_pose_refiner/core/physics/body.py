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
    def from_mesh(cls, mesh: trimesh.Trimesh, mass: float) -> RigidBody:
        """From the convex hull (always closed, unlike many scans), scaled to `mass`."""
        hull = mesh.convex_hull
        inertia = np.asarray(hull.moment_inertia) * (mass / hull.mass)
        com = np.asarray(hull.center_mass)
        radius = float(np.linalg.norm(mesh.vertices - com, axis=1).max())
        return cls(float(mass), com, inertia, radius)
