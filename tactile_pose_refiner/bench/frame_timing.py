"""`tpr metrics`: per-source gradient and per-metric timings (and values) on one frame.

The frame comes from a rosbag2 episode (--episode) or is generated (a grasp of --object). The
pose evaluated is the ground truth moved by --offset-mm / --offset-deg, like an initial estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from tactile_pose_refiner.core.frame import Frame


def load_frame(object_id: str, episode: str | None, index: int, seed: int) -> Frame:
    if episode:
        from tactile_pose_refiner.io.episode_bag import read_episode

        for k, frame in enumerate(read_episode(episode)):
            if k == index:
                return frame
        raise SystemExit(f"tpr metrics: {episode} has no frame {index}")
    from tactile_pose_refiner.sim.episode import EpisodeGenerator

    _, frames = EpisodeGenerator().episode(object_id, steps=1, seed=seed)
    return next(iter(frames))


def median_ms(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of `repeats` calls after one warm-up call (kernels compiled, caches hot)."""
    result = function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(times)), result


def run(
    object_id: str,
    episode: str | None,
    index: int,
    seed: int,
    repeats: int,
    offset_mm: float,
    offset_deg: float,
    sources: tuple[str, ...],
    threads: int = 1,
) -> list[dict]:
    """Rows {name, ms, value, note} for each gradient source (fwd+bwd, fwd) and each metric."""
    import torch

    from tactile_pose_refiner.core.baselines import Icp
    from tactile_pose_refiner.core.gradients.base import loss_and_gradient, perturbed_pose, random_offset
    from tactile_pose_refiner.core.gradients.frame_sources import build_sources
    from tactile_pose_refiner.core.metrics import ObjectMetrics, orientation_error_deg, position_error_cm
    from tactile_pose_refiner.core.scene.assets import HandAssets, ObjectAssets
    from tactile_pose_refiner.core.scene.objects import ObjectCatalog

    torch.set_num_threads(threads)
    frame = load_frame(object_id, episode, index, seed)
    if frame.T_cam_obj is None:
        raise SystemExit("tpr metrics: the frame has no ground-truth pose")
    model = ObjectCatalog.from_config().load(frame.object_id)
    obj, hand = ObjectAssets.build(model), HandAssets.from_config()
    T = random_offset(frame.T_cam_obj, offset_mm / 1000.0, np.radians(offset_deg), seed)
    rows = [
        {
            "name": "frame",
            "ms": 0.0,
            "value": float(len(model.geometry.faces)),
            "note": f"{frame.object_id}: object faces; pose {offset_mm:g} mm / {offset_deg:g} deg off",
        }
    ]
    for name, source in build_sources(frame, obj, hand, T, names=sources).items():
        ms, (result, _) = median_ms(lambda: loss_and_gradient(source, T), repeats)
        rows.append({"name": f"{name} fwd+bwd", "ms": ms, "value": float(result.value.detach()), "note": result.status})
        with torch.no_grad():
            ms, result = median_ms(
                lambda: source.loss(*perturbed_pose(T, torch.zeros(6, dtype=torch.float64))), repeats
            )
        rows.append({"name": f"{name} fwd", "ms": ms, "value": float(result.value), "note": ""})
    posed = hand.posed(frame)
    metrics = ObjectMetrics(model, sdf=obj.sdf)
    icp = Icp(model.geometry)
    timed = {
        "PE [cm]": lambda: position_error_cm(T, frame.T_cam_obj),
        "OE [deg]": lambda: orientation_error_deg(T, frame.T_cam_obj),
        "CA [cm2]": lambda: metrics.contact_area_cm2(T, posed),
        "IV [cm3]": lambda: metrics.intersection_volume(T, posed),
        "|dIV| [cm3] (and |dCA|)": lambda: metrics.deviation_from_truth(T, frame.T_cam_obj, posed)[1],
        "penetration max [mm]": lambda: metrics.penetration_depth_max_mm(T, posed),
        "stability SD [cm]": lambda: metrics.stability(T, posed),
        "ICP 50 it -> PE [cm]": lambda: icp.run(frame.object_points(), T, 50),
    }
    for name, function in timed.items():
        ms, value = median_ms(function, max(1, repeats // 4) if "ICP" in name or "stab" in name else repeats)
        note = ""
        if hasattr(value, "method"):
            value, note = value.cm3, value.method
        elif hasattr(value, "displacement_cm"):
            value, note = value.displacement_cm, f"contact {value.in_contact}, PD {value.penetration_cm:.2f} cm"
        elif hasattr(value, "T"):
            value, note = position_error_cm(value.T, frame.T_cam_obj), value.status
        rows.append({"name": name, "ms": ms, "value": float(value), "note": note})
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"{'what':<24} {'ms':>9} {'value':>12}  note")
    for row in rows:
        print(f"{row['name']:<24} {row['ms']:9.2f} {row['value']:12.4g}  {row['note']}")
