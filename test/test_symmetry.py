"""Turning about a symmetry axis: found on the cans' mass properties only, and the texture
(L_DR) brings a can turned 6 deg about its axis back to the truth."""

from __future__ import annotations

import numpy as np
import pytest

from tactile_pose_refiner.bench import render_bench as bench
from tactile_pose_refiner.core.gradients.base import loss_value
from tactile_pose_refiner.core.gradients.render import RenderSource
from tactile_pose_refiner.core.metrics import orientation_error_deg, position_error_cm
from tactile_pose_refiner.core.physics.body import RigidBody
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.objects import ObjectCatalog
from tactile_pose_refiner.core.symmetry import best_turn, symmetry_axis, turn_to_lowest, turned
from tactile_pose_refiner.sim.render import RaycastRenderer

TOLERANCE = load_config("refiner")["symmetry_turn"]["moment_tolerance"]


@pytest.fixture(scope="module")
def catalog() -> ObjectCatalog:
    return ObjectCatalog.from_config()


def body(catalog, object_id) -> RigidBody:
    model = catalog.load(object_id)
    return RigidBody.from_mesh(model.geometry, model.mass_kg)


@pytest.mark.parametrize(
    "object_id, symmetric",
    [
        ("002_master_chef_can", True),
        ("007_tuna_fish_can", True),
        ("003_cracker_box", False),
        ("035_power_drill", False),
    ],
)
def test_only_bodies_of_revolution_have_an_axis(catalog, object_id, symmetric):
    axis = symmetry_axis(body(catalog, object_id).inertia, TOLERANCE)
    assert (axis is not None) == symmetric
    if symmetric:  # the scans stand on their z axis
        assert abs(axis[2]) > 0.99


def test_the_texture_turns_a_can_back_about_its_axis(catalog):
    model = catalog.load("002_master_chef_can")
    mass = body(catalog, "002_master_chef_can")
    camera = PinholeCamera.from_config()
    T_true = bench.view_pose(model, 0.5)
    seen = RaycastRenderer(camera).render(model, T_true, [])
    source = RenderSource(model, camera, seen.rgb, seen.object_mask)
    axis = symmetry_axis(mass.inertia, TOLERANCE)
    start = turned(T_true, axis, mass.com, np.radians(6.0))
    T, turn_deg = turn_to_lowest(
        start, axis, mass.com, lambda T: loss_value(source, T), load_config("refiner")["symmetry_turn"]["grids_deg"]
    )
    assert turn_deg == pytest.approx(-6.0, abs=0.3)
    assert orientation_error_deg(T, T_true) < 0.3
    assert position_error_cm(T, T_true) < 0.02
    assert position_error_cm(start, T_true) > 0.15  # the scan's origin is off its axis


def test_each_turn_is_scored_once():
    """A grid of turns scores T itself once (not again as a turn of ~0) and every other turn once."""
    scored = []
    best_turn(
        np.eye(4),
        np.array([0.0, 0.0, 1.0]),
        np.zeros(3),
        lambda T: scored.append(np.round(T, 9).tobytes()) or 0.0,
        np.radians(20),
        np.radians(2),
    )
    assert len(scored) == len(set(scored)) == 21


def test_only_a_surface_that_turns_onto_itself_is_taken_for_a_body_of_revolution():
    """Moments alone took a 50 x 75 x 50 mm box and a triangular prism for cans (two principal
    moments agree); their surfaces do not land on themselves turned about that axis."""
    import trimesh

    from tactile_pose_refiner.core.symmetry import object_symmetry_axis, symmetry_axis

    wedge = trimesh.creation.extrude_polygon(trimesh.path.polygons.Polygon([(0, 0), (0.065, 0), (0.02, 0.045)]), 0.05)
    shapes = {
        "box": (trimesh.creation.box(extents=[0.05, 0.075, 0.05]), False),
        "wedge": (wedge, False),
        "capsule": (trimesh.creation.capsule(height=0.07, radius=0.024, count=[32, 32]), True),
        "cylinder": (trimesh.creation.cylinder(radius=0.03, height=0.1, sections=64), True),
    }
    for name, (mesh, symmetric) in shapes.items():
        assert symmetry_axis(mesh.moment_inertia, 0.06) is not None, name  # the moments agree for all four
        axis = object_symmetry_axis("auto", mesh.moment_inertia, 0.06, mesh, mesh.center_mass)
        assert (axis is not None) == symmetric, name
