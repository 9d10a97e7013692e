"""Object models: a catalog over textured meshes (default: the YCB scans in data/ycb).

Each object has a visual mesh (texture seams keep duplicated vertices, UVs intact) and a
geometry mesh (seam vertices merged) used for distances, volumes and sampling. Real scans
are often not watertight; `watertight` says so and the distance code uses winding numbers.

The bundled catalog (config/objects.yaml) is merged with the user's own catalog files: those a
command is given (`--catalog FILE`, node parameter `catalog`), else those named by the
environment variable TPR_CATALOG (os.pathsep-separated). A user's entry replaces a bundled one
of the same id; its mesh path is relative to the file that names it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import trimesh

from tactile_pose_refiner.core.resources import ResourceError, load_config, load_yaml, share_dir

CATALOG_ENV = "TPR_CATALOG"
log = logging.getLogger(__name__)


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
    symmetry: str = "auto"  # auto: an axis where two principal moments agree; none: never
    com_m: np.ndarray | None = None  # (3,) declared centre of mass (None: the convex hull's)
    inertia_kg_m2: np.ndarray | None = None  # (3, 3) declared inertia about it (None: the hull's)
    notes: list[str] = field(default_factory=list)  # what loading had to work around (a missing texture)
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
        """(V, 3) uint8 colour of each visual vertex: the texture's, the mesh's own vertex or
        face colours, else its material's colour (grey without one)."""
        if self.texture is not None and self.uv is not None:
            return self.sample_texture(self.uv)
        visual = self.visual.visual
        if getattr(visual, "kind", None) in ("vertex", "face"):  # ColorVisuals with colours of its own
            return np.asarray(visual.vertex_colors)[:, :3]
        colour = getattr(getattr(visual, "material", None), "main_color", None)
        colour = np.asarray(colour if colour is not None else UNTEXTURED_GREY, dtype=np.uint8)[:3]
        return np.tile(colour, (len(self.visual.vertices), 1))


UNTEXTURED_GREY = (128, 128, 128)


class ObjectCatalog:
    """Object ids -> ObjectModel, from catalog entries {id: {mesh, mass_kg, scale, ...}}
    (config/objects.yaml's `objects`); each entry's relative mesh path is resolved against the
    folder of the file that named it."""

    def __init__(self, entries: dict[str, dict], base_dir: Path) -> None:
        self.entries = dict(entries)
        self.base_dirs = {object_id: Path(base_dir) for object_id in entries}
        self._cache: dict[str, ObjectModel] = {}

    @classmethod
    def from_config(cls, name: str = "objects", catalogs: Sequence[str | os.PathLike] | None = None) -> ObjectCatalog:
        """The bundled catalog with the user's merged over it: `catalogs`, else TPR_CATALOG."""
        catalog = cls(load_config(name)["objects"], share_dir())
        for path in user_catalog_paths(catalogs):
            catalog.merge(read_catalog_file(path), path.parent)
        return catalog

    def merge(self, entries: dict[str, dict], base_dir: Path) -> None:
        """Add (or replace) entries whose relative mesh paths start at base_dir."""
        for object_id, entry in entries.items():
            self.entries[object_id] = entry
            self.base_dirs[object_id] = Path(base_dir)
            self._cache.pop(object_id, None)

    @property
    def ids(self) -> list[str]:
        return list(self.entries)

    def resolve_ids(self, spec: str) -> list[str]:
        """'all' or comma-separated ids -> list of ids (unknown ids raise)."""
        ids = self.ids if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
        for object_id in ids:
            self._entry(object_id)
        return ids

    def mesh_path(self, object_id: str) -> Path:
        path = Path(self._entry(object_id)["mesh"]).expanduser()
        return path if path.is_absolute() else self.base_dirs[object_id] / path

    def load(self, object_id: str) -> ObjectModel:
        if object_id not in self._cache:
            entry = self._entry(object_id)
            model = load_object(
                object_id, self.mesh_path(object_id), float(entry.get("mass_kg", 0.5)), float(entry.get("scale", 1.0))
            )
            model.symmetry = entry.get("symmetry", "auto")
            model.com_m = None if entry.get("com_m") is None else np.asarray(entry["com_m"], dtype=np.float64)
            inertia = entry.get("inertia_kg_m2")
            model.inertia_kg_m2 = None if inertia is None else np.asarray(inertia, dtype=np.float64).reshape(3, 3)
            self._cache[object_id] = model
        return self._cache[object_id]

    def _entry(self, object_id: str) -> dict:
        if object_id not in self.entries:
            raise ObjectModelError(f"unknown object id '{object_id}'; known: {', '.join(self.ids)}")
        return self.entries[object_id]


def user_catalog_paths(catalogs: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """The user's catalog files: `catalogs` when given, else TPR_CATALOG's (a missing file raises)."""
    if catalogs is None:
        catalogs = [part for part in os.environ.get(CATALOG_ENV, "").split(os.pathsep) if part.strip()]
    paths = [Path(str(path)).expanduser().resolve() for path in catalogs if str(path).strip()]
    for path in paths:
        if not path.is_file():
            raise ObjectModelError(f"object catalog not found: {path}")
    return paths


def read_catalog_file(path: Path) -> dict[str, dict]:
    """A user's catalog file's `objects`, checked against the catalog's schema (an empty file
    has none)."""
    from tactile_pose_refiner.core.config_schema import ConfigError, validate

    content = load_yaml(path) if path.stat().st_size else {}
    content = content or {"objects": {}}
    try:
        validate("objects", content, str(path))
    except ConfigError as exc:
        raise ObjectModelError(str(exc)) from None
    return dict(content.get("objects") or {})


def load_object(object_id: str, path: Path, mass_kg: float, scale: float = 1.0) -> ObjectModel:
    """Load a mesh file with its texture, its vertices times `scale` (metres); clear errors
    naming the file."""
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
    if not (np.isfinite(scale) and scale > 0):
        raise ObjectModelError(f"object '{object_id}': scale must be a positive number, got {scale}")
    if scale != 1.0:
        mesh.apply_scale(scale)
    problem = not_a_hand_held_solid(mesh)
    if problem is not None:
        raise ObjectModelError(f"object '{object_id}': {path} {problem}")
    texture, notes = _texture(object_id, path, mesh)
    return ObjectModel(object_id, path, mass_kg, mesh, texture, notes=notes)


# A hand-held object in metres: every side between 1 mm and 1 m.
MIN_EXTENT_M, MAX_EXTENT_M = 1e-3, 1.0


def not_a_hand_held_solid(mesh: trimesh.Trimesh) -> str | None:
    """Why a mesh cannot be a hand-held object in metres (flat, too few faces, wrong unit), or None."""
    extents = np.asarray(mesh.extents, dtype=np.float64)
    if len(mesh.faces) < 4 or extents.min() < MIN_EXTENT_M:
        return f"is not a solid: {len(mesh.faces)} faces, sides {np.round(extents, 4).tolist()} m"
    if extents.max() > MAX_EXTENT_M:
        return (
            f"is {extents.max():.3g} m long: meshes must be in metres (in millimetres? give it scale 0.001, "
            "tpr add-object --scale 0.001)"
        )
    return None


def _texture(object_id: str, path: Path, mesh: trimesh.Trimesh) -> tuple[np.ndarray | None, list[str]]:
    """The mesh's texture image, or None (untextured: vertex colours or grey) with a note on a
    texture its material names but that cannot be read."""
    image = getattr(getattr(mesh.visual, "material", None), "image", None)
    if image is not None:
        return np.asarray(image.convert("RGB")), []
    material_texture = _declared_texture(path)
    if material_texture is None:
        return None, []
    note = f"texture {material_texture} named by the material of {path} is missing or unreadable: untextured"
    log.warning("object '%s': %s", object_id, note)
    return None, [note]


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
