"""Users' own objects: catalog files merged over the bundled one (`--catalog`, TPR_CATALOG, node
parameter `catalog`), `tpr add-object`, meshes in millimetres or without their texture, declared
mass properties and symmetry, and episodes that are written whole or not at all."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import trimesh
import yaml

from tactile_pose_refiner.cli import main as tpr
from tactile_pose_refiner.cli import take_catalogs
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.assets import ObjectAssets
from tactile_pose_refiner.core.scene.objects import CATALOG_ENV, ObjectCatalog
from tactile_pose_refiner.core.symmetry import object_symmetry_axis, symmetry_axis

from conftest import REPO


@pytest.fixture
def no_user_catalog(monkeypatch):
    """tpr --catalog sets TPR_CATALOG for its processes: restore it after each test."""
    monkeypatch.setenv(CATALOG_ENV, "")  # (recorded, so restored: delenv of an absent name is not)


@pytest.fixture
def brick_in_mm(tmp_path):
    """A foam brick (5 x 7.5 x 5 cm, no texture) exported in millimetres, outside the package."""
    path = tmp_path / "meshes" / "foam_brick_mm.obj"
    path.parent.mkdir()
    trimesh.creation.box([50.0, 75.0, 50.0]).export(path)
    return path


@pytest.fixture
def gelatin_without_texture(tmp_path):
    """The gelatin box's OBJ and material, without the image the material names."""
    source = ObjectCatalog.from_config().mesh_path("009_gelatin_box")
    folder = tmp_path / "gelatin"
    folder.mkdir()
    for name in ("textured.obj", "textured.mtl"):
        shutil.copy(source.parent / name, folder / name)
    return folder / "textured.obj"


def test_add_object_checks_the_mesh_and_writes_a_user_catalog(no_user_catalog, brick_in_mm, tmp_path, capsys):
    catalog = tmp_path / "my_objects.yaml"
    code = tpr(["add-object", str(brick_in_mm), "--id", "foam_brick", "--mass", "0.028", "--catalog", str(catalog)])
    assert code == 2 and "scale 0.001" in capsys.readouterr().err  # millimetres caught, the fix named
    assert not catalog.exists()
    arguments = ["add-object", str(brick_in_mm), "--id", "foam_brick", "--mass", "0.028", "--catalog", str(catalog)]
    assert tpr(arguments + ["--scale", "0.001"]) == 0
    printed = capsys.readouterr().out
    assert "5.0 x 7.5 x 5.0 cm" in printed and "watertight: yes" in printed and "texture: none" in printed
    # two equal moments, but a box does not turn onto itself: said, with nothing to declare
    assert "does not turn onto itself" in printed and "no axis of revolution" in printed
    entry = yaml.safe_load(catalog.read_text())["objects"]["foam_brick"]
    assert entry == {"mesh": "meshes/foam_brick_mm.obj", "mass_kg": 0.028, "scale": 0.001}  # relative to the file
    bundled = load_config("objects")["objects"]
    merged = ObjectCatalog.from_config(catalogs=[catalog])
    assert set(merged.ids) == set(bundled) | {"foam_brick"}
    model = merged.load("foam_brick")
    assert np.allclose(sorted(model.geometry.extents), [0.05, 0.05, 0.075]) and model.texture is None


def test_the_environment_and_the_command_line_name_the_same_catalogs(
    no_user_catalog, brick_in_mm, tmp_path, monkeypatch
):
    catalog = tmp_path / "objects.yaml"
    catalog.write_text(
        yaml.safe_dump({"objects": {"brick": {"mesh": str(brick_in_mm), "mass_kg": 0.03, "scale": 1e-3}}})
    )
    assert "brick" not in ObjectCatalog.from_config().ids
    monkeypatch.setenv(CATALOG_ENV, str(catalog))
    assert ObjectCatalog.from_config().load("brick").mass_kg == 0.03
    assert take_catalogs(["bench", "--catalog", "a.yaml", "--data", "D", "--catalog=b.yaml"]) == (
        ["bench", "--data", "D"],
        ["a.yaml", "b.yaml"],
    )


def test_a_broken_or_missing_catalog_is_named_before_anything_runs(no_user_catalog, tmp_path, capsys, monkeypatch):
    assert tpr(["generate", "--catalog", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "d")]) == 2
    assert "object catalog not found" in capsys.readouterr().err
    monkeypatch.setenv(CATALOG_ENV, "")  # (one command per process: tpr set it for its children)
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"objects": {"brick": {"mesh": "brick.obj", "mas_kg": 0.03}}}))
    assert tpr(["generate", "--catalog", str(typo), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "mas_kg" in err and "mass_kg" in err and str(typo) in err
    unparsable = tmp_path / "unparsable.yaml"
    unparsable.write_text("objects: [brick, \n")  # a YAML syntax error: named, not a traceback
    assert tpr(["generate", "--catalog", str(unparsable), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert str(unparsable) in err and "line" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_a_mesh_whose_texture_is_missing_loads_untextured_with_a_note(gelatin_without_texture):
    model = ObjectCatalog({"gelatin": {"mesh": str(gelatin_without_texture)}}, gelatin_without_texture.parent).load(
        "gelatin"
    )
    assert model.texture is None and "texture_map.jpg" in model.notes[0] and "untextured" in model.notes[0]
    assert model.vertex_colors().shape == (len(model.visual.vertices), 3)  # what the renderer draws


def test_declared_mass_properties_and_symmetry_replace_the_derived_ones(brick_in_mm, tmp_path):
    square = tmp_path / "square.obj"
    trimesh.creation.box([0.05, 0.075, 0.05]).export(square)
    entry = {"mesh": str(square), "mass_kg": 0.1}
    derived = ObjectCatalog({"box": entry}, tmp_path).load("box")
    declared = ObjectCatalog(
        {"box": {**entry, "symmetry": "none", "com_m": [0.0, 0.01, 0.0], "inertia_kg_m2": np.eye(3).tolist()}},
        tmp_path,
    ).load("box")
    inertia = ObjectAssets.build(derived).body.inertia
    assert symmetry_axis(inertia, 0.06) is not None  # a square box's moments look like a can's
    assert object_symmetry_axis(declared.symmetry, inertia, 0.06) is None
    body = ObjectAssets.build(declared).body
    assert np.allclose(body.com, [0.0, 0.01, 0.0]) and np.allclose(body.inertia, np.eye(3))


def test_an_episode_that_fails_while_written_leaves_nothing_behind(tmp_path):
    from tactile_pose_refiner.io.episode_bag import EpisodeWriter
    from tactile_pose_refiner.sim.episode import EpisodeGenerator

    frames = EpisodeGenerator().episode("009_gelatin_box", 2, seed=0)[1]
    with pytest.raises(RuntimeError), EpisodeWriter(tmp_path / "episode") as writer:
        writer.write(next(iter(frames)))
        raise RuntimeError("generation failed")
    assert list(tmp_path.iterdir()) == []
    with EpisodeWriter(tmp_path / "episode") as writer:  # the same name again: written whole
        for frame in frames:
            writer.write(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["episode"] and (tmp_path / "episode" / "metadata.yaml").is_file()


@pytest.mark.slow
def test_a_new_users_object_is_generated_and_benchmarked_without_touching_the_package(
    no_user_catalog, brick_in_mm, gelatin_without_texture, tmp_path
):
    """A mesh from outside the repository (in millimetres, untextured) and a scan whose texture
    is missing, added with one command each, then `tpr generate` and `tpr bench` on them."""
    catalog = tmp_path / "objects.yaml"
    assert (
        tpr(
            [
                "add-object",
                str(brick_in_mm),
                "--id",
                "brick",
                "--mass",
                "0.03",
                "--catalog",
                str(catalog),
                "--scale",
                "0.001",
            ]
        )
        == 0
    )
    assert (
        tpr(["add-object", str(gelatin_without_texture), "--id", "jelly", "--mass", "0.097", "--catalog", str(catalog)])
        == 0
    )
    data, report = tmp_path / "data", tmp_path / "bench.json"
    common = ["--catalog", str(catalog)]
    assert tpr(["generate", *common, "--objects", "brick,jelly", "--steps", "2", "--out", str(data)]) == 0
    assert sorted(p.name for p in data.iterdir()) == ["brick_000", "jelly_000"]
    bench = ["bench", *common, "--data", str(data), "--methods", "initial,lm", "--noise", "paper", "--workers", "1"]
    assert tpr(bench + ["--json", str(report)]) == 0
    methods = json.loads(report.read_text())["methods"]
    assert set(methods["lm"]["per_object"]) == {"brick", "jelly"}
    assert methods["lm"]["pe_cm"] < 0.5 * methods["initial"]["pe_cm"]


def test_the_scan_importer_takes_any_mesh_folder_and_never_rewrites_what_is_there(tmp_path, no_user_catalog):
    """tools/import_ycb.py: a YCB folder (mass in the OBJ, a texture) and a plain mesh folder
    (neither: skipped and named until --mass gives one); the catalog it writes loads; an existing
    README in the output folder is kept."""
    import subprocess
    import sys

    source = tmp_path / "scans"
    shutil.copytree(REPO / "data" / "ycb" / "010_potted_meat_can", source / "010_potted_meat_can")
    (source / "brick").mkdir()
    trimesh.creation.box(extents=(0.05, 0.075, 0.05)).export(source / "brick" / "brick.obj")
    out, catalog = tmp_path / "objects", tmp_path / "objects.yaml"
    out.mkdir()
    (out / "README.md").write_text("provenance kept")
    command = [sys.executable, str(REPO / "tools" / "import_ycb.py"), str(source), "--out", str(out)]
    first = subprocess.run(command + ["--catalog", str(catalog)], capture_output=True, text=True, timeout=300)
    assert first.returncode == 1 and "brick: skipped (no mass" in first.stdout, first.stdout + first.stderr
    second = subprocess.run(
        command + ["--catalog", str(catalog), "--mass", "brick=0.028"], capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert (out / "README.md").read_text() == "provenance kept"
    assert (out / "010_potted_meat_can" / "texture_map.jpg").is_file()
    merged = ObjectCatalog.from_config(catalogs=[catalog])
    assert merged.load("brick").mass_kg == 0.028 and merged.load("brick").texture is None
    assert merged.load("010_potted_meat_can").texture is not None
