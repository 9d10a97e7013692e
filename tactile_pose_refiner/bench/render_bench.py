"""`tpr bench-render`: milliseconds per forward+backward of L_DR per backend and ROI size.

The target is the object rendered by the independent ray-caster (sim/render.py) at a pose
distance_m in front of the camera; the loss is evaluated 1 cm / 5 deg away from it, as in a
refinement. `fit_pose` is the short Adam fit that the tests and the occlusion study use.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tactile_pose_refiner.core.device import resolve_device
from tactile_pose_refiner.core.geometry import rotation_about, translation
from tactile_pose_refiner.core.gradients.base import GradientSource, perturbed_pose, pose_array, random_offset
from tactile_pose_refiner.core.gradients.render.base import roi_around
from tactile_pose_refiner.core.gradients.render.factory import BACKENDS
from tactile_pose_refiner.core.gradients.render.source import RenderSource
from tactile_pose_refiner.core.metrics import orientation_error_deg, position_error_cm
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.objects import ObjectCatalog


def view_pose(model, distance_m: float) -> np.ndarray:
    """A generic view: object centre distance_m ahead, slightly off-axis, turned 2 rad."""
    return (
        translation([0.02, -0.01, distance_m])
        @ rotation_about([1.0, 0.5, 0.2], 2.0)
        @ translation(-model.geometry.centroid)
    )


def pose_error(T: np.ndarray, T_true: np.ndarray) -> tuple[float, float]:
    """(translation error [m], rotation error [deg]): the metrics' PE and OE."""
    return position_error_cm(T, T_true) / 100.0, orientation_error_deg(T, T_true)


def fit_pose(
    source: GradientSource,
    T_init: np.ndarray,
    pivot_obj: np.ndarray,
    iterations: int,
    lr_m: float = 1e-3,
    lr_rad: float = 1e-2,
    decay: float = 0.96,
) -> np.ndarray:
    """Adam on a step (dt [m], omega [rad]) that turns the object about pivot_obj (3,) (its
    centroid, object frame) rather than its mesh origin — otherwise every rotation also moves the
    object and the two kinds of step fight. Learning rates decay geometrically; returns the
    (4, 4) pose with the lowest loss seen."""
    step_t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    step_r = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([{"params": [step_t], "lr": lr_m}, {"params": [step_r], "lr": lr_rad}])
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, decay)

    def pose(step_t, step_r):
        return perturbed_pose(T_init, torch.cat([step_t, step_r]), pivot_obj)

    best, best_pose = float("inf"), T_init
    for _ in range(iterations):
        optimiser.zero_grad()
        rotation, translation_ = pose(step_t, step_r)
        result = source.loss(rotation, translation_)
        if not result.ok:
            break
        if result.value.item() < best:
            best, best_pose = result.value.item(), pose_array(rotation, translation_)
        result.value.backward()
        optimiser.step()
        schedule.step()
    return best_pose


def time_backend(source: RenderSource, T: np.ndarray, repeats: int) -> float:
    """Median milliseconds of one loss evaluation with its backward pass at T."""
    times = []
    for _ in range(repeats + 1):  # the first call warms caches and is dropped
        delta = torch.zeros(6, dtype=torch.float64, requires_grad=True)
        started = time.perf_counter()
        source.loss(*perturbed_pose(T, delta)).value.backward()
        if delta.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(times[1:]))


def main(argv: list[str] | None = None) -> int:
    from tactile_pose_refiner.sim.render import RaycastRenderer  # the independent target renderer

    parser = argparse.ArgumentParser(prog="tpr bench-render", description=__doc__.splitlines()[0])
    parser.add_argument("--object", default="006_mustard_bottle", help="catalog object id")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated backends")
    parser.add_argument("--device", default=None, help="soft_torch device: cpu | cuda | auto")
    parser.add_argument("--distances", default="0.35,0.5,0.8", help="object distances [m]")
    parser.add_argument("--depth", action="store_true", help="include the depth term")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row (median)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: steady timings on a shared CPU)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    camera = PinholeCamera.from_config()
    model = ObjectCatalog.from_config().load(args.object)
    reference = RaycastRenderer(camera)
    config = load_config("render")
    config["device"] = args.device or config["device"]
    config["weights"]["depth"] = 1.0 if args.depth else 0.0
    print(
        f"object {args.object}, camera {camera.width}x{camera.height}, "
        f"{len(model.visual.faces)} faces, torch threads {torch.get_num_threads()}"
    )
    print(f"{'backend':<11} {'device':<6} {'distance_m':>10} {'roi_px':>9} {'ms/fwd+bwd':>11}")
    for distance in (float(d) for d in args.distances.split(",")):
        T_true = view_pose(model, distance)
        target = reference.render(model, T_true, [])
        T = random_offset(T_true, 0.01, np.radians(5.0), seed=0)
        for backend in args.backends.split(","):
            config["backend"] = backend
            source = RenderSource(model, camera, target.rgb, target.object_mask, target.depth_m, config)
            device = resolve_device(config["device"]) if backend == "soft_torch" else "cpu"
            roi = roi_around(
                source.renderer.mesh.vertices, T, camera, int(config["roi_margin_px"]), float(config["min_depth_m"])
            )
            ms = time_backend(source, T, args.repeats)
            print(f"{backend:<11} {device:<6} {distance:>10.2f} {roi.width:>4}x{roi.height:<4} {ms:>11.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
