#!/usr/bin/env python3
"""Copies object scans (YCB's google_16k layout or any folder holding one OBJ) into a data folder
and, with --catalog, writes their catalog entries.

Meshes are kept as they are; a texture is reduced to 1024 x 1024 JPEG so a repository stays
small (a scan without one is copied untextured). The mass comes from a `mass_kg <kg>` comment in
the OBJ (the YCB_sim packaging) or from --mass ID=KG; a folder with neither is skipped and named.
Provenance goes into OUT/README.md only where there is none yet: shipped files are never
rewritten. Usage:

    python tools/import_ycb.py SRC_DIR [--out DIR] [--catalog FILE] [--mass ID=KG ...]

(default --out: data/ycb, the project's own default data).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from PIL import Image

TEXTURE_SIZE = 1024
ROOT = Path(__file__).resolve().parents[1]
README = (
    "# Object scans copied by tools/import_ycb.py\n\n"
    f"Meshes unchanged, textures reduced to {TEXTURE_SIZE}x{TEXTURE_SIZE} JPEG.\nLicence: the YCB models are "
    "CC BY 4.0 (ycbbenchmarks.com); the OBJ packaging comes from the public YCB_sim repository "
    "(Apache-2.0).\n\nSource notes as received:\n\n"
)


def mesh_of(folder: Path) -> Path | None:
    """The folder's mesh: textured.obj, else its only OBJ."""
    if (folder / "textured.obj").is_file():
        return folder / "textured.obj"
    meshes = sorted(folder.glob("*.obj"))
    return meshes[0] if len(meshes) == 1 else None


def mass_of(mesh: Path, given: dict[str, float]) -> float | None:
    if mesh.parent.name in given:
        return given[mesh.parent.name]
    found = re.search(r"mass_kg ([0-9.]+)", mesh.read_text(errors="replace"))
    return float(found.group(1)) if found else None


def import_object(mesh: Path, target: Path) -> Path:
    """Copy the mesh (and its texture, as JPEG) into target; returns the copied mesh."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(mesh, target / mesh.name)
    material = mesh.with_suffix(".mtl")
    if material.is_file():
        texts = material.read_text(errors="replace")
        for texture in re.findall(r"map_Kd\s+(\S+)", texts):
            source = mesh.parent / texture
            if source.is_file():
                jpeg = Path(texture).with_suffix(".jpg").name
                image = Image.open(source).convert("RGB").resize((TEXTURE_SIZE, TEXTURE_SIZE), Image.LANCZOS)
                image.save(target / jpeg, quality=90)
                texts = texts.replace(texture, jpeg)
        (target / material.name).write_text(texts)
    return target / mesh.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder of object folders (one OBJ each)")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "ycb", help="where the objects are copied")
    parser.add_argument("--catalog", type=Path, help="write each object's entry into this catalog file")
    parser.add_argument("--mass", action="append", default=[], metavar="ID=KG", help="mass of an object folder")
    args = parser.parse_args(argv)
    given = {key: float(value) for key, _, value in (item.partition("=") for item in args.mass)}
    skipped = 0
    for folder in sorted(p for p in args.source.iterdir() if p.is_dir()):
        mesh = mesh_of(folder)
        mass = mass_of(mesh, given) if mesh else None
        if mesh is None or mass is None:
            print(f"{folder.name}: skipped ({'no single OBJ' if mesh is None else 'no mass: --mass ID=KG'})")
            skipped += 1
            continue
        copied = import_object(mesh, args.out / folder.name)
        print(f"{folder.name}: {mass} kg -> {copied}")
        if args.catalog:
            from tactile_pose_refiner.add_object import mesh_reference, write_entry

            write_entry(args.catalog, folder.name, {"mesh": mesh_reference(copied, args.catalog), "mass_kg": mass})
    readme = args.out / "README.md"
    if not readme.exists():
        notes = args.source / "README.md"
        readme.write_text(README + (notes.read_text() if notes.is_file() else ""))
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
