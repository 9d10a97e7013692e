#!/usr/bin/env python3
"""Copies YCB scans into data/ycb/ (the project's own default data) and writes the catalog.

Meshes are kept as they are (google_16k scans, 16,384 triangles, metres); textures are
reduced to 1024 x 1024 JPEG so the repository stays small. Provenance and licences go into
data/ycb/README.md. Usage: python tools/import_ycb.py SRC_DIR   (e.g. the team's assets/ycb)
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from PIL import Image

TEXTURE_SIZE = 1024
ROOT = Path(__file__).resolve().parents[1]


def import_object(source: Path, target: Path) -> float:
    target.mkdir(parents=True, exist_ok=True)
    obj_text = (source / "textured.obj").read_text()
    mass = float(re.search(r"mass_kg ([0-9.]+)", obj_text).group(1))
    shutil.copy(source / "textured.obj", target / "textured.obj")
    mtl = (source / "textured.mtl").read_text().replace("texture_map.png", "texture_map.jpg")
    (target / "textured.mtl").write_text(mtl)
    image = Image.open(source / "texture_map.png").convert("RGB")
    image.resize((TEXTURE_SIZE, TEXTURE_SIZE), Image.LANCZOS).save(target / "texture_map.jpg", quality=90)
    return mass


def main(source_dir: str) -> None:
    source_dir = Path(source_dir)
    out = ROOT / "data" / "ycb"
    masses = {}
    for source in sorted(p for p in source_dir.iterdir() if (p / "textured.obj").is_file()):
        masses[source.name] = import_object(source, out / source.name)
        print(f"{source.name}: {masses[source.name]} kg")
    readme = (source_dir / "README.md").read_text() if (source_dir / "README.md").is_file() else ""
    (out / "README.md").write_text(
        "# YCB object scans (default data of tactile_pose_refiner)\n\n"
        "Copied by tools/import_ycb.py; meshes unchanged, textures reduced to "
        f"{TEXTURE_SIZE}x{TEXTURE_SIZE} JPEG.\nLicence: the YCB models are CC BY 4.0 "
        "(ycbbenchmarks.com); the OBJ packaging comes from the public YCB_sim repository "
        "(Apache-2.0).\n\nSource notes as received:\n\n" + readme
    )


if __name__ == "__main__":
    main(sys.argv[1])
