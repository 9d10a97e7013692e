"""`tpr add-object MESH --id ID --mass KG --catalog FILE [--scale S]`: check a user's mesh and
write its entry into their own catalog file (created if absent), never into the package's.

It loads the mesh as every command will (core/scene/objects.py) and prints what it found: size
and unit, watertightness (a scan with holes gets the winding-number sign), texture, centre of
mass and density, and whether its moments make it a body of revolution (the cans' turn search).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import yaml

from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.objects import ObjectModel, ObjectModelError, load_object, read_catalog_file
from tactile_pose_refiner.core.symmetry import object_symmetry_axis, symmetry_axis

# a hand-held object's mean density [g/cm^3] outside this is a wrong mass or unit, most likely
PLAUSIBLE_DENSITY = (0.02, 20.0)


def findings(model: ObjectModel, scale: float) -> list[str]:
    """What a user should know about the mesh, one line each."""
    geometry = model.geometry
    body = RigidBody.from_mesh(geometry, model.mass_kg)
    extents_cm = np.asarray(geometry.extents) * 100.0
    lines = [
        f"mesh: {len(model.visual.faces)} faces, {len(geometry.vertices)} vertices; size "
        + " x ".join(f"{e:.1f}" for e in extents_cm)
        + f" cm (vertices x {scale:g} are metres)",
        "watertight: yes"
        if model.watertight
        else "watertight: no (holes): inside/outside comes from the winding number, slower to bake",
        "texture: "
        + (
            f"{model.texture.shape[1]}x{model.texture.shape[0]} image"
            if model.texture is not None
            else "none: vertex colours or uniform grey (the rendering source sees only the silhouette)"
        ),
    ]
    lines += [f"warning: {note}" for note in model.notes]
    hull = geometry.convex_hull
    density = model.mass_kg / (hull.volume * 1e6) * 1000.0
    lines.append(
        f"centre of mass (convex hull, mesh frame): {np.round(body.com * 1000, 1).tolist()} mm; "
        f"hull volume {hull.volume * 1e6:.0f} cm3, mean density {density:.2f} g/cm3"
    )
    if not PLAUSIBLE_DENSITY[0] <= density <= PLAUSIBLE_DENSITY[1]:
        lines.append(f"warning: a density of {density:.3g} g/cm3 is implausible: check --mass and --scale")
    lines.append(_symmetry_line(body, geometry))
    return lines


def _symmetry_line(body, geometry) -> str:
    """What the refiner will do with the object's symmetry: the moments propose an axis, the
    surface turned about it must land on itself (object_symmetry_axis), as in the refiner."""
    tolerance = float(load_config("refiner")["symmetry_turn"]["moment_tolerance"])
    proposed = symmetry_axis(body.inertia, tolerance)
    if proposed is None:
        return "symmetry: no axis of revolution"
    axis = object_symmetry_axis("auto", body.inertia, tolerance, geometry, body.com)
    if axis is None:
        return (
            f"symmetry: two principal moments agree within {tolerance:.0%}, but the surface does not turn onto "
            "itself about that axis: no axis of revolution (nothing to declare)"
        )
    return (
        f"symmetry: a body of revolution about {np.round(axis, 3).tolist()} (moments and surface agree; its turn "
        "about it is found from the texture); `symmetry: none` in the entry turns this off"
    )


def write_entry(catalog: Path, object_id: str, entry: dict) -> None:
    """Add or replace one entry of a user's catalog file (its other entries kept)."""
    entries = read_catalog_file(catalog) if catalog.is_file() else {}
    entries[object_id] = entry
    catalog.parent.mkdir(parents=True, exist_ok=True)
    header = "# Objects of a user's own catalog (tpr add-object); mesh paths are relative to this file.\n"
    catalog.write_text(header + yaml.safe_dump({"objects": entries}, sort_keys=False), encoding="utf-8")


def mesh_reference(mesh: Path, catalog: Path) -> str:
    """The mesh's path as the catalog stores it: relative to the catalog's folder."""
    return Path(os.path.relpath(mesh.resolve(), catalog.resolve().parent)).as_posix()


def main(args: argparse.Namespace) -> int:
    mesh, catalog = Path(args.mesh).expanduser(), Path(args.catalog).expanduser()
    if not args.mass > 0:
        print(f"tpr add-object: --mass must be positive, got {args.mass}", file=sys.stderr)
        return 2
    try:
        model = load_object(args.id, mesh.resolve(), float(args.mass), float(args.scale))
        report = findings(model, float(args.scale))
        entry = {"mesh": mesh_reference(mesh, catalog), "mass_kg": float(args.mass)}
        if args.scale != 1.0:
            entry["scale"] = float(args.scale)
        write_entry(catalog, args.id, entry)
    except ObjectModelError as exc:
        print(f"tpr add-object: {exc}", file=sys.stderr)
        return 2
    for line in report:
        print(f"tpr add-object: {args.id}: {line}")
    bundled = args.id in load_config("objects")["objects"]
    print(
        f"tpr add-object: wrote {args.id} into {catalog}"
        + (" (it replaces the bundled object of that id)" if bundled else "")
        + f"; use it with --catalog {catalog} or TPR_CATALOG={catalog}"
    )
    return 0
