"""Object models: a catalog over textured meshes (default: the YCB scans in data/ycb).

Each object has a visual mesh (texture seams keep duplicated vertices, UVs intact) and a
geometry mesh (seam vertices merged) used for distances, volumes and sampling. Real scans
are often not watertight; `watertight` says so and the distance code uses winding numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import trimesh

from tactile_pose_refiner.core.resources import ResourceError, load_config, share_dir


class ObjectModelError(ResourceError):
    """Unknown object id, unreadable mesh or missing texture; the message names the file."""


@dataclass
class ObjectModel:
    """One rigid object. Units: metres, kilograms; mesh frame = object frame."""

    object_id: str
    mesh_path: Path
    mass_kg: float
    visual: trimesh.Trimesh  # with .visual.uv; may duplicate seam vertices
    texture: np.ndarray | None  # (H, W, 3) uint8, None for untextured meshes
    geometry: trimesh.Trimesh = field(init=False)

    def __post_init__(self) -> None:
        geometry = trimesh.Trimesh(self.visual.vertices.copy(), self.visual.faces.copy(), process=False)
        geometry.merge_vertices()
        geometry.remove_unreferenced_vertices()
        self.geometry = geometry

    @cached_property
    def watertight(self) -> bool:
        return bool(self.geometry.is_watertight)

    @property
    def uv(self) -> np.ndarray | None:
        uv = getattr(self.visual.visual, "uv", None)
        return None if uv is None else np.asarray(uv, dtype=np.float64)

    def sample_texture(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) texture coordinates (OBJ convention, v up, wrapping) -> (N, 3) uint8 texels."""
        height, width = self.texture.shape[:2]
        column = np.clip(((uv[:, 0] % 1.0) * width).astype(np.int64), 0, width - 1)
        row = np.clip(((1.0 - uv[:, 1] % 1.0) * height).astype(np.int64), 0, height - 1)
        return self.texture[row, column]

    def vertex_colors(self) -> np.ndarray:
        """(V, 3) uint8 colour of each visual vertex (texture lookup, or the mesh's colours)."""
        if self.texture is not None and self.uv is not None:
            return self.sample_texture(self.uv)
        visual = self.visual.visual  # TextureVisuals without an image converts; ColorVisuals is one
        colors = visual.to_color() if hasattr(visual, "to_color") else visual
        return np.asarray(colors.vertex_colors)[:, :3]


class ObjectCatalog:
    """Object ids -> ObjectModel, from config/objects.yaml (or any {id: {mesh, mass_kg}})."""

    def __init__(self, entries: dict[str, dict], base_dir: Path) -> None:
        self.entries = entries
        self.base_dir = base_dir
        self._cache: dict[str, ObjectModel] = {}

    @classmethod
    def from_config(cls, name: str = "objects") -> ObjectCatalog:
        return cls(load_config(name)["objects"], share_dir())

    @property
    def ids(self) -> list[str]:
        return list(self.entries)

    def resolve_ids(self, spec: str) -> list[str]:
        """'all' or comma-separated ids -> list of ids (unknown ids raise)."""
        ids = self.ids if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
        for object_id in ids:
            self._entry(object_id)
        return ids

    def load(self, object_id: str) -> ObjectModel:
        if object_id not in self._cache:
            entry = self._entry(object_id)
            path = Path(entry["mesh"])
            path = path if path.is_absolute() else self.base_dir / path
            self._cache[object_id] = load_object(object_id, path, float(entry.get("mass_kg", 0.5)))
        return self._cache[object_id]

    def _entry(self, object_id: str) -> dict:
        if object_id not in self.entries:
            raise ObjectModelError(f"unknown object id '{object_id}'; known: {', '.join(self.ids)}")
        return self.entries[object_id]


def load_object(object_id: str, path: Path, mass_kg: float) -> ObjectModel:
    """Load a mesh file with its texture; clear errors naming the file."""
    if not path.is_file():
        raise ObjectModelError(f"object '{object_id}': mesh file not found: {path}")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:
        raise ObjectModelError(f"object '{object_id}': cannot read mesh {path}: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ObjectModelError(f"object '{object_id}': {path} holds no triangles")
    if not np.isfinite(mesh.vertices).all():
        raise ObjectModelError(f"object '{object_id}': {path} has non-finite vertices")
    problem = not_a_hand_held_solid(mesh)
    if problem is not None:
        raise ObjectModelError(f"object '{object_id}': {path} {problem}")
    return ObjectModel(object_id, path, mass_kg, mesh, _texture(object_id, path, mesh))


# A hand-held object in metres: every side between 1 mm and 1 m.
MIN_EXTENT_M, MAX_EXTENT_M = 1e-3, 1.0


def not_a_hand_held_solid(mesh: trimesh.Trimesh) -> str | None:
    """Why a mesh cannot be a hand-held object in metres (flat, too few faces, wrong unit), or None."""
    extents = np.asarray(mesh.extents, dtype=np.float64)
    if len(mesh.faces) < 4 or extents.min() < MIN_EXTENT_M:
        return f"is not a solid: {len(mesh.faces)} faces, sides {np.round(extents, 4).tolist()} m"
    if extents.max() > MAX_EXTENT_M:
        return f"is {extents.max():.3g} m long: meshes must be in metres (is it in millimetres?)"
    return None


def _texture(object_id: str, path: Path, mesh: trimesh.Trimesh) -> np.ndarray | None:
    material_texture = _declared_texture(path)
    if material_texture is None:
        return None  # untextured mesh: vertex/face colours or grey
    image = getattr(getattr(mesh.visual, "material", None), "image", None)
    if image is None:
        raise ObjectModelError(
            f"object '{object_id}': texture {material_texture} named by the material of {path} is missing or unreadable"
        )
    return np.asarray(image.convert("RGB"))


def _declared_texture(path: Path) -> Path | None:
    """The map_Kd file an OBJ's material library names (None for other formats)."""
    if path.suffix.lower() != ".obj":
        return None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("mtllib"):
            mtl = path.parent / line.split(maxsplit=1)[1].strip()
            if mtl.is_file():
                for entry in mtl.read_text(errors="replace").splitlines():
                    if entry.strip().startswith("map_Kd"):
                        return mtl.parent / entry.split(maxsplit=1)[1].strip()
    return None
