"""Xela tactile skin readings (ROS-free counterpart of msg/TactileArray)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from tactile_pose_refiner.core.resources import load_config


class TactileInputError(ValueError):
    """A tactile reading is malformed; the message says which field and why."""


@dataclass(frozen=True)
class TactileReading:
    """One reading of the skin, one row per taxel.

    link_names: (N,) hand link each taxel sits on.
    taxel_ids:  (N,) uint16 global taxel index in the layout.
    positions:  (N, 3) float64 taxel centres in their link frame [m].
    forces:     (N, 3) float64 3-axis signal in sensor units (z normal to the patch).
    force_scale: sensor units -> newtons; 0.0 when uncalibrated.
    stamp_ns:   acquisition time [ns].
    """

    link_names: tuple[str, ...]
    taxel_ids: np.ndarray
    positions: np.ndarray
    forces: np.ndarray
    force_scale: float = 0.0
    stamp_ns: int = 0

    def __post_init__(self) -> None:
        count = len(self.link_names)
        taxel_ids = np.asarray(self.taxel_ids)
        positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        forces = np.asarray(self.forces, dtype=np.float64).reshape(-1, 3)
        for field, rows in (("taxel_ids", len(taxel_ids)), ("positions", len(positions)), ("forces", len(forces))):
            if rows != count:
                raise TactileInputError(f"tactile reading: {field} has {rows} entries, link_names has {count}")
        if taxel_ids.size and (taxel_ids.min() < 0 or taxel_ids.max() > np.iinfo(np.uint16).max):
            raise TactileInputError("tactile reading: taxel_ids must fit in uint16")
        if not np.isfinite(positions).all():
            raise TactileInputError("tactile reading: positions contain NaN or inf")
        if not np.isfinite(forces).all():
            raise TactileInputError("tactile reading: forces contain NaN or inf")
        if not np.isfinite(self.force_scale) or self.force_scale < 0:
            raise TactileInputError(f"tactile reading: force_scale {self.force_scale} must be >= 0")
        object.__setattr__(self, "link_names", tuple(self.link_names))
        object.__setattr__(self, "taxel_ids", taxel_ids.astype(np.uint16))
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "forces", forces)

    @classmethod
    def from_message(cls, msg) -> TactileReading:
        """From any object with TactileArray's fields (an rclpy or a rosbags message);
        raises TactileInputError when the fields are inconsistent."""
        stamp = msg.header.stamp
        return cls(
            link_names=tuple(msg.link_names),
            taxel_ids=np.asarray(msg.taxel_ids, dtype=np.int64),
            positions=np.array([[p.x, p.y, p.z] for p in msg.positions]).reshape(-1, 3),
            forces=np.array([[f.x, f.y, f.z] for f in msg.forces]).reshape(-1, 3),
            force_scale=float(msg.force_scale),
            stamp_ns=int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
        )

    def __len__(self) -> int:
        return len(self.link_names)

    def in_contact(self, threshold: float) -> np.ndarray:
        """(N,) bool: taxels whose force magnitude exceeds `threshold` (sensor units)."""
        return np.linalg.norm(self.forces, axis=1) > threshold


def _onto_surface(
    mesh, points: np.ndarray, normals: np.ndarray, nearest: np.ndarray, nearest_face: np.ndarray, reach_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) points and unit normals (their nearest surface points (N, 3) and those faces (N,)
    given) -> their places on the mesh's surface and its normals there: the first hit of a ray
    from reach_m out along the normal, inwards; else the nearest point."""
    origins = points + reach_m * normals
    placed, face = nearest.copy(), nearest_face.copy()
    hits, rays, faces = mesh.ray.intersects_location(origins, -normals, multiple_hits=True)
    for ray in range(len(points)):
        mine = np.nonzero(rays == ray)[0]
        if len(mine):
            first = mine[np.argmin(np.linalg.norm(hits[mine] - origins[ray], axis=1))]
            placed[ray], face[ray] = hits[first], faces[first]
    return placed, mesh.face_normals[face]


@dataclass(frozen=True)
class SkinLayout:
    """Where the taxels are: ids (N,), link names (N,), patch names (N,), positions and outward
    normals (N, 3) in their link frames [m]."""

    ids: np.ndarray
    links: tuple[str, ...]
    patches: tuple[str, ...]
    positions: np.ndarray
    normals: np.ndarray

    @classmethod
    def from_config(cls, name: str = "xela_layout") -> SkinLayout:
        taxels = load_config(name)["taxels"]
        return cls(
            ids=np.array([t["id"] for t in taxels], dtype=np.int64),
            links=tuple(t["link"] for t in taxels),
            patches=tuple(t["patch"] for t in taxels),
            positions=np.array([t["position"] for t in taxels], dtype=np.float64),
            normals=np.array([t["normal"] for t in taxels], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def placed_on(self, meshes, tolerance_m: float, reach_m: float = 0.005) -> tuple[SkinLayout, int, float]:
        """The layout on a hand's own collision geometry (link -> trimesh, link frame): a taxel
        farther than tolerance_m from its link's surface (a layout drawn for other geometry, e.g.
        the vendor's STL meshes: a third of the taxels 1 mm inside them) moves to where a ray
        along its normal, cast inwards from reach_m outside, meets the surface, else to the
        nearest surface point, and takes that face's normal. Returns (layout, taxels moved,
        largest move [m])."""
        positions, normals = self.positions.copy(), self.normals.copy()
        links = np.array(self.links)
        for link, mesh in meshes.items():
            rows = np.nonzero(links == link)[0]
            if len(rows) == 0:
                continue
            nearest, distance, face = trimesh.proximity.closest_point(mesh, positions[rows])
            far = distance > tolerance_m
            off = rows[far]
            if len(off):
                positions[off], normals[off] = _onto_surface(
                    mesh, positions[off], normals[off], nearest[far], face[far], reach_m
                )
        moved = np.linalg.norm(positions - self.positions, axis=1)
        placed = SkinLayout(self.ids, self.links, self.patches, positions, normals)
        return placed, int((moved > 0).sum()), float(moved.max(initial=0.0))

    @cached_property
    def row_of_id(self) -> dict[int, int]:
        """Global taxel id -> its row in the layout."""
        return {int(taxel_id): row for row, taxel_id in enumerate(self.ids)}

    def neighbours(self, radius_m: float) -> np.ndarray:
        """(N, N) 1 where two taxels of one link lie within radius_m of each other (0 on the diagonal)."""
        pairs = cKDTree(self.positions).query_pairs(radius_m, output_type="ndarray")
        matrix = np.zeros((len(self), len(self)))
        for i, j in pairs:
            if self.links[i] == self.links[j]:
                matrix[i, j] = matrix[j, i] = 1.0
        return matrix

    def posed(
        self, link_poses: dict[str, np.ndarray], T_frame_base: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Taxel positions and normals (N, 3) in the frame of T_frame_base (default: base), given T_base_link."""
        T_frame_base = np.eye(4) if T_frame_base is None else T_frame_base
        positions = np.empty_like(self.positions)
        normals = np.empty_like(self.normals)
        for link in set(self.links):
            rows = np.array([name == link for name in self.links])
            T = T_frame_base @ link_poses[link]
            positions[rows] = self.positions[rows] @ T[:3, :3].T + T[:3, 3]
            normals[rows] = self.normals[rows] @ T[:3, :3].T
        return positions, normals


def taxel_frames(
    layout: SkinLayout, link_poses: dict[str, np.ndarray], T_frame_base: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Taxel centres, outward normals and shear axes x, y (each (N, 3)) in the frame of
    T_frame_base; the shear axes are fixed to the link (taxel_tangents of the link-frame normal),
    as a sensor's are. A reading (fx, fy, fz) is the force the object presses on the taxel: the
    taxel pushes the object with fz * normal - fx * x - fy * y."""
    positions, normals = layout.posed(link_poses, T_frame_base)
    x_link, y_link = taxel_tangents(np.asarray(layout.normals, dtype=np.float64))
    x_axes, y_axes = np.empty_like(x_link), np.empty_like(y_link)
    for link in set(layout.links):
        rows = np.array([name == link for name in layout.links])
        R = (T_frame_base @ link_poses[link])[:3, :3]
        x_axes[rows], y_axes[rows] = x_link[rows] @ R.T, y_link[rows] @ R.T
    return positions, normals, x_axes, y_axes


def taxel_tangents(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A right-handed tangent basis (x, y) per taxel normal (the taxel's shear axes)."""
    reference = np.where(np.abs(normals[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]])
    x_axis = np.cross(reference, normals)
    x_axis /= np.linalg.norm(x_axis, axis=1, keepdims=True)
    return x_axis, np.cross(normals, x_axis)


@dataclass(frozen=True)
class TactileModel:
    """Penalty model of the skin: force from how far the object surface presses into a taxel.

    compression = contact_margin - signed distance of the taxel to the object (m);
    normal force = stiffness * compression, clipped to [0, max_units]; shear = shear_ratio *
    normal force * the object normal's tilt in the taxel's tangent plane; plus Gaussian noise.
    """

    contact_margin_m: float
    stiffness_units_per_m: float
    max_units: float
    shear_ratio: float
    noise_std_units: float
    contact_threshold_units: float

    @classmethod
    def from_config(cls, name: str = "tactile") -> TactileModel:
        config = load_config(name)
        return cls(**{k: float(config[k]) for k in cls.__dataclass_fields__})

    def implied_gaps(self, forces: np.ndarray) -> np.ndarray:
        """(K, 3) force rows -> (K,) the signed distance [m] to the object surface their normal
        force implies (margin - force / stiffness: negative where the skin is pressed in)."""
        return self.contact_margin_m - np.clip(forces[:, 2], 0.0, None) / self.stiffness_units_per_m

    def forces(
        self,
        signed_distance: np.ndarray,
        object_normals: np.ndarray,
        taxel_normals: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """(N,) distances [m], (N, 3) object surface normals and taxel normals (same frame)
        -> (N, 3) forces in taxel frames (x, y shear; z normal) [sensor units]."""
        compression = self.contact_margin_m - np.asarray(signed_distance)
        normal_force = np.clip(self.stiffness_units_per_m * compression, 0.0, self.max_units)
        x_axis, y_axis = taxel_tangents(taxel_normals)
        push = -object_normals  # direction the object surface pushes the taxel
        shear = (
            self.shear_ratio
            * normal_force[:, None]
            * np.stack([np.einsum("nc,nc->n", push, x_axis), np.einsum("nc,nc->n", push, y_axis)], axis=1)
        )
        forces = np.concatenate([shear, normal_force[:, None]], axis=1)
        if rng is not None and self.noise_std_units > 0:
            forces = forces + rng.normal(0.0, self.noise_std_units, forces.shape)
        return np.clip(forces, -self.max_units, self.max_units)


# --- the taxels in contact (torch-free: tactile_node places them too) ---------------------------
def contact_positions(
    reading: TactileReading,
    layout: SkinLayout,
    link_poses: dict[str, np.ndarray],
    T_frame_base: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """(K, 3) positions of the taxels whose force exceeds gamma, in the frame of T_frame_base.

    Positions come from the layout posed by forward kinematics (the message's own positions
    are in link frames too; the layout is the calibrated source). Unknown taxel ids are skipped.
    """
    positions, _, _ = _touching(reading, layout, link_poses, T_frame_base, threshold)
    return positions


def contact_threshold(reading: TactileReading, gamma: float, noise_factor: float) -> float:
    """gamma, raised to noise_factor x the reading's own noise where the skin is noisier than
    gamma allows for: a robust per-axis sigma (1.4826 x the median absolute deviation over all
    taxels, most of which touch nothing) takes in noise, crosstalk and drifted zeros, so noise
    alone does not make contacts (3-axis noise passes 5 sigma on ~1 taxel in 10^5)."""
    forces = np.asarray(reading.forces, dtype=np.float64)
    if noise_factor <= 0 or len(forces) < 8:
        return gamma
    deviation = np.abs(forces - np.median(forces, axis=0))
    sigma = 1.4826 * float(np.median(deviation))
    return max(gamma, noise_factor * sigma)


def fingers_in_contact(reading: TactileReading, gamma: float, fingers: dict[str, list[str]]) -> list[str]:
    """The fingers (name -> its links) with a taxel in contact, by the contact rule the sources use."""
    if reading is None or len(reading.forces) == 0:
        return []
    touching = reading.in_contact(contact_threshold(reading, gamma, _noise_factor()))
    links = {str(link) for link, on in zip(reading.link_names, touching) if on}
    return [name for name, finger_links in fingers.items() if links & set(finger_links)]


@lru_cache(maxsize=1)
def _noise_factor() -> float:
    return float(load_config("tactile").get("contact_noise_factor", 0.0))


def touching_rows(reading: TactileReading, layout: SkinLayout, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The layout rows (K,) of the taxels in contact and their force rows (K, 3): force over
    gamma = `threshold`, raised where the reading is noisier (contact_threshold); unknown ids skipped."""
    row_of_id = layout.row_of_id
    threshold = contact_threshold(reading, threshold, _noise_factor())
    touching = [i for i in np.nonzero(reading.in_contact(threshold))[0] if int(reading.taxel_ids[i]) in row_of_id]
    rows = np.array([row_of_id[int(reading.taxel_ids[i])] for i in touching], dtype=np.int64)
    return rows, reading.forces[touching]


def _touching(reading, layout, link_poses, T_frame_base, threshold):
    """Posed positions, outward normals (K, 3) and force rows (K, 3) of the taxels in contact."""
    positions, normals = layout.posed(link_poses, T_frame_base)
    rows, forces = touching_rows(reading, layout, threshold)
    return positions[rows], normals[rows], forces
