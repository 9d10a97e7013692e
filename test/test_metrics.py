"""Metrics against analytic cases and on real scans: PE, OE (Eq. 3), CA, IV (exact and on scans
with holes), penetration, DeepSimHO stability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from tactile_pose_refiner.core.geometry import rotation_about, translation
from tactile_pose_refiner.core.metrics import (
    EXACT,
    WINDING_NUMBER,
    ObjectMetrics,
    Stability,
    orientation_error_deg,
    position_error_cm,
    stability_summary,
    to_manifold,
)
from tactile_pose_refiner.core.scene.hand import PosedHand
from tactile_pose_refiner.core.scene.objects import ObjectModel

from scenes import frame, generator, hand_in_camera, pushed_into_hand


def object_from_mesh(mesh: trimesh.Trimesh, mass: float = 0.2) -> ObjectModel:
    return ObjectModel("analytic", Path("analytic.obj"), mass, mesh, None)


def hand_from_meshes(meshes: dict[str, trimesh.Trimesh]) -> PosedHand:
    points, faces = trimesh.sample.sample_surface_even(trimesh.util.concatenate(list(meshes.values())), 4000, seed=0)
    normals = trimesh.util.concatenate(list(meshes.values())).face_normals[faces]
    return PosedHand(meshes, np.asarray(points), normals, np.eye(4), {})


def test_position_and_orientation_error():
    T_gt = translation([0.1, 0.0, 0.5]) @ rotation_about([0.3, 0.2, 1.0], 0.4)
    T = translation([0.02, 0.0, 0.0]) @ T_gt @ rotation_about([1.0, -2.0, 0.5], np.radians(30.0))
    assert position_error_cm(T, T_gt) == pytest.approx(2.0, abs=1e-9)
    assert orientation_error_deg(T, T_gt) == pytest.approx(30.0, abs=1e-6)
    assert orientation_error_deg(T_gt, T_gt) == pytest.approx(0.0, abs=1e-5)


def test_intersection_volume_of_two_boxes_is_exact():
    """A 4x4x4 cm object box overlapping a 2x2x10 cm 'link' by a 1x2x4 cm slab = 8 cm^3."""
    metrics = ObjectMetrics(object_from_mesh(trimesh.creation.box([0.04, 0.04, 0.04])))
    link = trimesh.creation.box([0.02, 0.02, 0.10]).apply_translation([0.02, 0, 0])
    hand = hand_from_meshes({"link": link, "twin": link.copy()})  # overlapping links count once
    volume = metrics.intersection_volume(np.eye(4), hand)
    assert volume.method == EXACT
    assert volume.cm3 == pytest.approx(1.0 * 2.0 * 4.0, rel=1e-6)


def test_intersection_volume_of_a_box_with_a_hole_is_estimated_not_zero():
    """Same boxes with one object face deleted: manifold3d alone returns 0 silently; the
    winding-number proxy recovers the volume."""
    box = trimesh.creation.box([0.04, 0.04, 0.04])
    holed = trimesh.Trimesh(box.vertices, box.faces[2:], process=False)  # drop one side
    assert to_manifold(holed).volume() == 0.0
    metrics = ObjectMetrics(object_from_mesh(holed))
    link = trimesh.creation.box([0.02, 0.02, 0.10]).apply_translation([0.02, 0, 0])
    volume = metrics.intersection_volume(np.eye(4), hand_from_meshes({"link": link}))
    assert volume.method == WINDING_NUMBER
    assert volume.cm3 == pytest.approx(8.0, rel=0.05)


def test_contact_area_of_a_sphere_on_a_plane():
    """A sphere (r = 5 cm) resting on a plate: the samples within 5 mm form a cap of height
    5 mm, area 2 pi r h = 15.71 cm^2."""
    metrics = ObjectMetrics(object_from_mesh(trimesh.creation.icosphere(subdivisions=6, radius=0.05)))
    plate = trimesh.creation.box([0.3, 0.3, 0.01]).apply_translation([0, 0, -0.05 - 0.005])
    area = metrics.contact_area_cm2(np.eye(4), hand_from_meshes({"plate": plate}))
    assert area == pytest.approx(2 * np.pi * 5.0 * 0.5, rel=0.03)


def test_penetration_depth_of_a_box_pushed_into_a_plate():
    metrics = ObjectMetrics(object_from_mesh(trimesh.creation.box([0.04, 0.04, 0.04])))
    plate = trimesh.creation.box([0.3, 0.3, 0.02]).apply_translation([0, 0, -0.02 - 0.01 + 0.003])
    assert metrics.penetration_depth_max_mm(np.eye(4), hand_from_meshes({"plate": plate})) == pytest.approx(
        3.0, abs=0.2
    )


@pytest.mark.parametrize("object_id", ["006_mustard_bottle", "035_power_drill"])
def test_intersection_volume_on_scans_with_holes(object_id):
    """Real scans that are not watertight: IV is labelled a winding-number estimate, is small at
    the ground-truth grasp and grows when the object is pushed 4 mm into a finger."""
    model = generator().catalog.load(object_id)
    assert not model.watertight
    scene = frame(object_id)
    hand = hand_in_camera(scene)
    metrics = ObjectMetrics(model)
    at_truth = metrics.intersection_volume(scene.T_cam_obj, hand)
    pushed = metrics.intersection_volume(
        pushed_into_hand(scene.T_cam_obj, metrics.sdf, hand.surface_points, 0.004), hand
    )
    assert at_truth.method == pushed.method == WINDING_NUMBER
    assert at_truth.cm3 < 0.1 and pushed.cm3 > 0.1


def test_deviation_from_truth_is_zero_at_the_truth_and_the_difference_elsewhere():
    model = generator().catalog.load("008_pudding_box")
    scene = frame("008_pudding_box")
    hand = hand_in_camera(scene)
    metrics = ObjectMetrics(model)
    assert metrics.deviation_from_truth(scene.T_cam_obj, scene.T_cam_obj, hand) == (0.0, 0.0)
    T = pushed_into_hand(scene.T_cam_obj, metrics.sdf, hand.surface_points, 0.004)
    dca, div = metrics.deviation_from_truth(T, scene.T_cam_obj, hand)
    assert div == pytest.approx(
        metrics.intersection_volume(T, hand).cm3 - metrics.intersection_volume(scene.T_cam_obj, hand).cm3
    )
    assert div > 0.1
    assert dca == pytest.approx(
        abs(metrics.contact_area_cm2(T, hand) - metrics.contact_area_cm2(scene.T_cam_obj, hand))
    )


def test_winding_number_proxy_agrees_with_exact_booleans_on_a_closed_scan():
    model = generator().catalog.load("008_pudding_box")
    scene = frame("008_pudding_box")
    hand = hand_in_camera(scene)
    metrics = ObjectMetrics(model)
    T = pushed_into_hand(scene.T_cam_obj, metrics.sdf, hand.surface_points, 0.004)
    exact = metrics.intersection_volume(T, hand)
    metrics.manifold = None  # force the proxy path
    proxy = metrics.intersection_volume(T, hand)
    assert exact.method == EXACT and proxy.method == WINDING_NUMBER
    assert proxy.cm3 == pytest.approx(exact.cm3, rel=0.08)


def test_stability_separates_the_grasp_from_an_intersecting_pose():
    """DeepSimHO SD/SR/CP/PD: the generated grasp holds the can under gravity (palm up); the
    same can 2 cm into the hand is thrown out by the contact forces."""
    model = generator().catalog.load("005_tomato_soup_can")
    scene = frame("005_tomato_soup_can")
    hand = hand_in_camera(scene)
    metrics = ObjectMetrics(model)
    held = metrics.stability(scene.T_cam_obj, hand)
    inside = scene.T_cam_obj.copy()
    inside[:3, 3] += (hand.surface_points.mean(axis=0) - inside[:3, 3]) * 0.3
    thrown = metrics.stability(inside, hand)
    print(f"SD grasp {held.displacement_cm:.2f} cm, intersecting {thrown.displacement_cm:.2f} cm")
    assert held.in_contact and held.displacement_cm < 1.0
    assert thrown.displacement_cm > 1.0 and thrown.penetration_cm > held.penetration_cm
    summary = stability_summary([held, thrown], success_displacement_m=0.01)
    assert summary["sr_pct"] == 50.0 and summary["cp_pct"] == 100.0


def test_stability_summary_of_nothing_is_zero_not_nan():
    assert stability_summary([], 0.01)["sd_cm"] == 0.0
    no_contact = stability_summary([Stability(5.0, False, 0.0)], 0.01)
    assert no_contact == {"sd_cm": 5.0, "sr_pct": 0.0, "cp_pct": 0.0, "pd_cm": 0.0, "count": 1}
