"""Rendering gradient L_DR: both backends against the independent ray-caster, gradients against
finite differences on a real textured YCB scan, the window-independent loss, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from tactile_pose_refiner import cli
from tactile_pose_refiner.bench import render_bench as bench
from tactile_pose_refiner.core.geometry import translation
from tactile_pose_refiner.core.gradients.base import loss_and_gradient, perturbed_pose, random_offset
from tactile_pose_refiner.core.gradients.render import RenderSource, renderer_for, roi_around
from tactile_pose_refiner.core.gradients.render.base import mesh_silhouette
from tactile_pose_refiner.core.gradients.render.factory import BACKENDS
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.objects import ObjectCatalog, ObjectModel
from tactile_pose_refiner.sim.render import RaycastRenderer

OBJECTS = ("008_pudding_box", "006_mustard_bottle")  # a box, a bottle with holes in its scan


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small tensors: a second intra-op thread only adds waiting on this shared 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def camera() -> PinholeCamera:
    return PinholeCamera.from_config()


@pytest.fixture(scope="module")
def catalog() -> ObjectCatalog:
    return ObjectCatalog.from_config()


@pytest.fixture(scope="module")
def scenes(camera, catalog):
    """object id -> (model, true pose, ray-cast RenderResult) at 0.5 m."""
    reference = RaycastRenderer(camera, background_rgb=(0, 0, 0))
    result = {}
    for object_id in OBJECTS:
        model = catalog.load(object_id)
        T = bench.view_pose(model, 0.5)
        result[object_id] = (model, T, reference.render(model, T, []))
    return result


def config_with(**changes) -> dict:
    config = load_config("render")
    weights = changes.pop("weights", {})
    config.update(changes)
    config["weights"].update(weights)
    return config


def rendered(model, camera, T, backend):
    """Hard silhouette, soft silhouette, colour (h, w, 3) in [0, 1], depth [m], window."""
    renderer = renderer_for(model, camera, config_with(), backend)
    roi = roi_around(renderer.mesh.vertices, T, camera, 16, 0.05)
    rendering = renderer.render(torch.as_tensor(T[:3, :3]), torch.as_tensor(T[:3, 3]), roi)
    soft = rendering.silhouette.detach().cpu().numpy()
    coverage = np.maximum(soft, 1e-12)
    colour = rendering.rgb.detach().cpu().numpy() / coverage[..., None]  # un-premultiply
    depth = rendering.depth.detach().cpu().numpy() / coverage
    return renderer.hard_silhouette(rendering), soft, colour, depth, roi


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("object_id", OBJECTS)
def test_backend_agrees_with_the_ray_caster(scenes, camera, backend, object_id):
    model, T, reference = scenes[object_id]
    hard, soft, colour, depth, roi = rendered(model, camera, T, backend)
    truth = roi.crop(reference.object_mask)
    assert truth.sum() == reference.object_mask.sum()  # the window holds the whole object
    both = hard & truth & (soft > 0.999)  # interior: colour and depth defined
    depth_error_mm = np.abs(depth - roi.crop(reference.depth_m))[both].mean() * 1000
    colour_error = np.abs(colour * 255 - roi.crop(reference.rgb))[both].mean()
    flat_error = np.abs(roi.crop(reference.rgb)[both] - roi.crop(reference.rgb)[both].mean(0)).mean()
    print(
        f"{backend} {object_id}: IoU {iou(hard, truth):.4f}, depth {depth_error_mm:.3f} mm, "
        f"colour {colour_error:.2f}/255 (flat colour {flat_error:.2f}), "
        f"soft area / true area {soft.sum() / truth.sum():.4f}"
    )
    assert iou(hard, truth) >= 0.98
    assert depth_error_mm < 1.0
    # Bilinear lookups (deodr: in its 512 px copy of the map) vs the ray-caster's nearest texel.
    assert colour_error < 10.0
    assert colour_error < 0.25 * flat_error  # the texture is really there
    if backend == "soft_torch":  # symmetric edges: the soft silhouette is unbiased
        assert abs(soft.sum() / truth.sum() - 1.0) < 0.01


@pytest.mark.parametrize("object_id", OBJECTS)
def test_backends_agree_with_each_other(scenes, camera, object_id):
    model, T, _ = scenes[object_id]
    hard_a, _, colour_a, depth_a, _ = rendered(model, camera, T, "deodr")
    hard_b, _, colour_b, depth_b, _ = rendered(model, camera, T, "soft_torch")
    both = hard_a & hard_b
    assert iou(hard_a, hard_b) >= 0.98
    assert np.abs(depth_a - depth_b)[both].mean() < 1e-3
    assert np.abs(colour_a - colour_b)[both].mean() * 255 < 10.0


def finite_difference(source, T, steps) -> np.ndarray:
    gradient = np.zeros(6)
    with torch.no_grad():
        for k, h in enumerate(steps):
            delta = torch.zeros(6, dtype=torch.float64)
            delta[k] = h
            up = source.loss(*perturbed_pose(T, delta)).value.item()
            down = source.loss(*perturbed_pose(T, -delta)).value.item()
            gradient[k] = (up - down) / (2 * h)
    return gradient


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_matches_finite_differences_on_a_textured_scan(scenes, camera, backend):
    """Tolerance 5 % (relative, in displacement units): the image is only piecewise smooth — the
    face in front of a pixel and the texels it interpolates change discretely — so a central
    difference over 0.1 mm (0.12 px) averages kinks that the analytic derivative sees one side
    of. A wrong sign, scale or missing term (e.g. no texture gradient) is off by far more."""
    model, T_true, reference = scenes["008_pudding_box"]
    source = RenderSource(
        model,
        camera,
        reference.rgb,
        reference.object_mask,
        reference.depth_m,
        config_with(backend=backend, weights={"depth": 1.0}),
    )
    T = random_offset(T_true, 0.004, np.radians(1.5), seed=3)
    result, gradient = loss_and_gradient(source, T)
    radius = np.linalg.norm(model.geometry.vertices - model.geometry.centroid, axis=1).max()
    step_m = 1e-4
    numeric = finite_difference(source, T, [step_m] * 3 + [step_m / radius] * 3)
    scale = np.r_[np.ones(3), np.full(3, 1.0 / radius)]  # d/d(rotation) -> d/d(surface motion)
    analytic, numeric = gradient * scale, numeric * scale
    relative = np.linalg.norm(analytic - numeric) / np.linalg.norm(numeric)
    cosine = analytic @ numeric / np.linalg.norm(analytic) / np.linalg.norm(numeric)
    print(
        f"{backend}: loss {result.value.item():.3e}, relative error {relative:.4f}, cos {cosine:.6f}\n"
        f"  analytic {np.round(analytic, 5)}\n  numeric  {np.round(numeric, 5)}"
    )
    assert result.ok
    assert relative < 0.05
    assert cosine > 0.999


@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_is_the_full_image_loss_whatever_the_window(scenes, camera, backend):
    model, T_true, reference = scenes["006_mustard_bottle"]
    T = random_offset(T_true, 0.005, np.radians(3.0), seed=1)
    values = []
    for margin in (16, 2000):  # 2000: the window is the whole image
        source = RenderSource(
            model,
            camera,
            reference.rgb,
            reference.object_mask,
            reference.depth_m,
            config_with(backend=backend, roi_margin_px=margin, weights={"depth": 1.0}),
        )
        values.append(loss_and_gradient(source, T))
    (small, gradient_small), (full, gradient_full) = values
    assert small.value.item() == pytest.approx(full.value.item(), rel=1e-9)
    np.testing.assert_allclose(gradient_small, gradient_full, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_is_lowest_at_the_true_pose_and_cheap_without_autograd(scenes, camera, backend):
    model, T_true, reference = scenes["008_pudding_box"]
    source = RenderSource(
        model,
        camera,
        reference.rgb,
        reference.object_mask,
        reference.depth_m,
        config_with(backend=backend, weights={"depth": 1.0}),
    )
    with torch.no_grad():
        at_truth = source.loss(torch.as_tensor(T_true[:3, :3]), torch.as_tensor(T_true[:3, 3])).value.item()
        for seed in range(4):
            T = random_offset(T_true, 0.002, np.radians(1.0), seed=seed)
            assert source.loss(torch.as_tensor(T[:3, :3]), torch.as_tensor(T[:3, 3])).value.item() > at_truth


def test_window_follows_the_object_not_the_camera_resolution(catalog):
    model = catalog.load("008_pudding_box")
    T = bench.view_pose(model, 0.5)
    small = PinholeCamera(640, 480, 615.0, 615.0, 320.0, 240.0)
    large = PinholeCamera(1920, 1440, 615.0, 615.0, 960.0, 720.0)
    roi_small = roi_around(model.geometry.vertices, T, small, 16, 0.05)
    roi_large = roi_around(model.geometry.vertices, T, large, 16, 0.05)
    assert (roi_small.width, roi_small.height) == (roi_large.width, roi_large.height)
    assert roi_small.pixels < 0.2 * small.width * small.height


# -- bad input: a labelled zero-weight result, finite zero gradient, never NaN -----------------


def assert_degraded(source, T, reason: str) -> None:
    result, gradient = loss_and_gradient(source, T)
    assert not result.ok and result.weight == 0.0
    assert reason in result.status
    assert np.array_equal(gradient, np.zeros(6))


@pytest.mark.parametrize("backend", BACKENDS)
def test_object_outside_the_image_or_behind_the_camera_is_degraded(scenes, camera, backend):
    model, T, reference = scenes["008_pudding_box"]
    source = RenderSource(model, camera, reference.rgb, reference.object_mask, None, config_with(backend=backend))
    assert_degraded(source, translation([3.0, 0.0, 0.0]) @ T, "outside the image")
    assert_degraded(source, translation([0.0, 0.0, -1.0]) @ T, "behind the camera")


def test_empty_or_malformed_observation_is_degraded(scenes, camera):
    model, T, reference = scenes["008_pudding_box"]
    empty = np.zeros_like(reference.object_mask)
    assert_degraded(RenderSource(model, camera, reference.rgb, empty), T, "mask has 0 pixels")
    assert_degraded(RenderSource(model, camera, reference.rgb[:10]), T, "rgb image of shape")
    assert_degraded(RenderSource(model, camera, reference.rgb, reference.object_mask[:, :5]), T, "mask of shape")


def test_without_a_mask_the_render_is_composited_over_the_image(scenes, camera):
    model, T_true, reference = scenes["008_pudding_box"]
    source = RenderSource(model, camera, reference.rgb, None, None, config_with())
    result, gradient = loss_and_gradient(source, random_offset(T_true, 0.004, np.radians(2.0), seed=2))
    at_truth, _ = loss_and_gradient(source, T_true)
    assert result.ok and np.linalg.norm(gradient) > 0
    assert at_truth.value.item() < result.value.item()


def test_pixels_the_hand_hides_leave_the_loss(camera, catalog):
    """A replayed grasp whose fingers cover part of the mustard bottle: the hand's ray-cast
    silhouette, less the object pixels, is exactly the generator's visible-hand mask and leaves
    the loss (with or without a mask); a non-finite hand is a degraded source."""
    from scenes import frame, hand_in_camera

    example = frame("006_mustard_bottle", 1)
    model = catalog.load(example.object_id)
    hand = hand_in_camera(example).mesh
    reference = RaycastRenderer(camera).render(model, example.T_cam_obj, [hand])
    hand_only = mesh_silhouette(hand.vertices, hand.faces, camera)
    np.testing.assert_array_equal(hand_only & ~reference.object_mask, reference.hand_mask)
    config = config_with(hand_occlusion={"enabled": True, "dilate_px": 0})
    source = RenderSource(model, camera, reference.rgb, reference.object_mask, None, config, occluders=hand)
    np.testing.assert_array_equal(source.seen == 0, reference.hand_mask)
    # Without a mask the render is composited over the image: there the hand's pixels counted.
    painted = reference.rgb.copy()
    painted[reference.hand_mask] = (255, 0, 255)
    T = random_offset(example.T_cam_obj, 0.003, np.radians(2.0), seed=4)
    losses = {}
    for name, rgb, occluders in (
        ("hand", reference.rgb, hand),
        ("hand painted", painted, hand),
        ("blind", reference.rgb, None),
        ("blind painted", painted, None),
    ):
        source = RenderSource(model, camera, rgb, None, None, config, occluders=occluders)
        losses[name] = loss_and_gradient(source, T)[0].value.item()
    assert losses["hand painted"] == pytest.approx(losses["hand"], rel=1e-12)
    assert losses["blind painted"] != pytest.approx(losses["blind"], rel=1e-6)
    broken = hand.copy()
    broken.vertices[0] = np.nan
    assert_degraded(
        RenderSource(model, camera, reference.rgb, reference.object_mask, None, config, occluders=broken),
        T,
        "non-finite hand mesh",
    )


@pytest.mark.parametrize("object_id", OBJECTS)
def test_target_draws_the_coverage_the_renderer_draws_at_the_truth(scenes, camera, object_id):
    """The soft target read from the ray-cast mask, summed over the image, against DEODR's render
    of the true pose: balanced with the edge measured at a pose 1 cm / 7 deg off, it loses less
    than half of what the plain blur-read edge loses (which is what pulled L_DR away from the
    camera)."""
    model, T_true, reference = scenes[object_id]
    lost = {}
    for name, balance, pose in (
        ("plain", False, None),
        ("balanced", True, random_offset(T_true, 0.01, np.radians(7.0), seed=3)),
    ):
        source = RenderSource(
            model,
            camera,
            reference.rgb,
            reference.object_mask,
            None,
            config_with(mask_edge_balance=balance),
            reference_pose=pose,
        )
        roi = roi_around(source.renderer.mesh.vertices, T_true, camera, 16, 0.05)
        with torch.no_grad():
            drawn = (
                source.renderer.render(
                    torch.as_tensor(T_true[:3, :3]), torch.as_tensor(T_true[:3, 3]), roi, with_depth=False
                )
                .silhouette.sum()
                .item()
            )
        lost[name] = drawn - source.target_alpha.sum()
    assert lost["plain"] > 10.0  # px: the bias being removed
    assert abs(lost["balanced"]) < 0.5 * lost["plain"]


def plate_at(T: np.ndarray, dz_m: float, half_m: float, dx_m: float = 0.0) -> trimesh.Trimesh:
    """A square facing the camera (camera frame), dz_m behind (+) or in front of (-) the object."""
    x, y, z = T[0, 3] + dx_m, T[1, 3], T[2, 3] + dz_m
    corners = [
        [x - half_m, y - half_m, z],
        [x + half_m, y - half_m, z],
        [x + half_m, y + half_m, z],
        [x - half_m, y + half_m, z],
    ]
    return trimesh.Trimesh(corners, [[0, 1, 2], [0, 2, 3], [0, 2, 1], [0, 3, 2]], process=False)


def test_a_hand_behind_the_object_is_background_and_one_in_front_hides(scenes, camera):
    """A palm behind the object (depth farther than the object's edge) shows where the object is
    not: with the depth image none of its pixels leave the loss, which is then the loss without
    any hand. A plate in front of part of the object hides what it covers, depth or not."""
    model, T_true, clear = scenes["008_pudding_box"]
    T = random_offset(T_true, 0.003, np.radians(2.0), seed=5)
    palm = plate_at(T_true, +0.12, 0.6)  # fills the image, behind the farthest corner of the box
    behind = RaycastRenderer(camera).render(model, T_true, [palm])
    assert behind.hand_mask.sum() > 10000
    loss = lambda source: loss_and_gradient(source, T)[0].value.item()  # noqa: E731
    depth_aware = RenderSource(model, camera, behind.rgb, behind.object_mask, behind.depth_m, occluders=palm)
    depth_blind = RenderSource(model, camera, behind.rgb, behind.object_mask, None, occluders=palm)
    no_hand = RenderSource(model, camera, behind.rgb, behind.object_mask, behind.depth_m)
    assert depth_aware.seen.all() and not depth_blind.seen.all()
    assert loss(depth_aware) == pytest.approx(loss(no_hand), rel=1e-12)
    finger = plate_at(T_true, -0.05, 0.02, dx_m=0.03)
    front = RaycastRenderer(camera).render(model, T_true, [finger])
    assert (mesh_silhouette(finger.vertices, finger.faces, camera) & clear.object_mask).sum() > 100
    source = RenderSource(
        model,
        camera,
        front.rgb,
        front.object_mask,
        front.depth_m,
        config_with(hand_occlusion={"enabled": True, "dilate_px": 0, "behind_margin_m": 0.005}),
        occluders=finger,
    )
    np.testing.assert_array_equal(source.seen == 0, front.hand_mask)


def with_faces(model: ObjectModel, vertices: np.ndarray, faces: np.ndarray) -> ObjectModel:
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return ObjectModel(f"{model.object_id}-edited-{len(faces)}", model.mesh_path, model.mass_kg, mesh, None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_triangles_are_dropped_and_edge_on_faces_stay_finite(scenes, camera, backend):
    model, T, reference = scenes["008_pudding_box"]
    vertices, faces = model.geometry.vertices, model.geometry.faces
    collinear = len(vertices) + np.arange(3)
    extra_vertices = np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.02, 0.0, 0.0]])
    repeated = np.stack([faces[:50, 0], faces[:50, 0], faces[:50, 1]], axis=1)
    edited = with_faces(model, np.vstack([vertices, extra_vertices]), np.vstack([faces, repeated, collinear[None]]))
    config = config_with(backend=backend)
    # Axis-aligned box seen square-on: its side faces are exactly edge-on (zero screen area).
    square_on = translation([0.0, 0.0, 0.5]) @ translation(-model.geometry.centroid)
    source = RenderSource(edited, camera, reference.rgb, reference.object_mask, None, config)
    for pose in (T, square_on):
        result, gradient = loss_and_gradient(source, pose)
        assert result.ok and np.isfinite(gradient).all() and np.linalg.norm(gradient) > 0
    flat = with_faces(model, vertices, np.stack([faces[:, 0], faces[:, 0], faces[:, 1]], axis=1))
    assert_degraded(
        RenderSource(flat, camera, reference.rgb, reference.object_mask, None, config), T, "no non-degenerate triangle"
    )


def test_unknown_backend_or_device_is_a_clear_error(scenes, camera):
    model = scenes["008_pudding_box"][0]
    with pytest.raises(ValueError, match="backend"):
        renderer_for(model, camera, config_with(backend="pytorch3d"))
    with pytest.raises(ValueError, match="device"):
        renderer_for(model, camera, config_with(backend="soft_torch", device="tpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_soft_torch_on_cuda_matches_the_cpu(scenes, camera):
    model, T_true, reference = scenes["008_pudding_box"]
    T = random_offset(T_true, 0.004, np.radians(1.5), seed=3)
    results = {}
    for device in ("cpu", "cuda"):
        source = RenderSource(
            model,
            camera,
            reference.rgb,
            reference.object_mask,
            reference.depth_m,
            config_with(backend="soft_torch", device=device, weights={"depth": 1.0}),
        )
        results[device] = loss_and_gradient(source, T)
    (cpu, gradient_cpu), (cuda, gradient_cuda) = results["cpu"], results["cuda"]
    assert cuda.value.item() == pytest.approx(cpu.value.item(), rel=1e-3)
    cosine = gradient_cpu @ gradient_cuda / np.linalg.norm(gradient_cpu) / np.linalg.norm(gradient_cuda)
    assert cosine > 0.999


def test_benchmark_prints_milliseconds_per_backend_and_window(capsys):
    threads = torch.get_num_threads()
    assert (
        cli.main(
            [
                "bench-render",
                "--object",
                "008_pudding_box",
                "--distances",
                "0.5",
                "--repeats",
                "1",
                "--threads",
                str(threads),
            ]
        )
        == 0
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(BACKENDS)]
    assert {line.split()[0] for line in lines} == set(BACKENDS)
    for line in lines:
        assert "x" in line.split()[3] and float(line.split()[-1]) > 0
