#!/usr/bin/env python3
"""How the rendering gradient degrades with finger occlusion, on generated frames.

Replays the stored test grasps (test/data/grasps.json) into frames from several camera poses
(noisy RGB-D, the visible-object mask cut by the fingers), starts 1 cm / 5 deg off the ground
truth and runs the short Adam fit of bench/render_bench.py on L_DR alone; prints the final error per
frame with its occlusion, then a summary by occlusion bin.
Usage: .venv/bin/python tools/render_occlusion_study.py [--objects a,b] [--seeds 4] [--iterations 80]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

from tactile_pose_refiner.bench import render_bench as bench  # noqa: E402
from tactile_pose_refiner.core.gradients.base import random_offset  # noqa: E402
from tactile_pose_refiner.core.gradients.render import RenderSource  # noqa: E402
from tactile_pose_refiner.core.resources import load_config  # noqa: E402

from scenes import frame, generator  # noqa: E402  (test scenes: stored grasps, replayed)


def occlusion_of(example) -> float:
    """Share of the object's silhouette hidden by the hand in this frame."""
    model = generator().catalog.load(example.object_id)
    alone = generator().renderer.render(model, example.T_cam_obj, [])
    return 1.0 - (example.mask > 0).sum() / max(int(alone.object_mask.sum()), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--objects",
        default="008_pudding_box,006_mustard_bottle,005_tomato_soup_can,"
        "003_cracker_box,010_potted_meat_can,035_power_drill",
    )
    parser.add_argument("--seeds", type=int, default=4, help="camera poses per object")
    parser.add_argument("--iterations", type=int, default=80)
    parser.add_argument("--backend", default="deodr")
    parser.add_argument(
        "--depth-weight", type=float, default=0.3, help="w_depth of the second run per frame (the first has none)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for object_id in args.objects.split(","):
        model = generator().catalog.load(object_id)
        for seed in range(args.seeds):
            example = frame(object_id, seed)
            occlusion = occlusion_of(example)
            T_init = random_offset(example.T_cam_obj, 0.01, np.radians(5.0), seed=seed)
            for use_depth in (False, True):
                config = load_config("render")
                config["backend"] = args.backend
                config["weights"]["depth"] = args.depth_weight if use_depth else 0.0
                source = RenderSource(model, example.camera, example.rgb, example.mask, example.depth_m, config)
                started = time.perf_counter()
                T = bench.fit_pose(source, T_init, model.geometry.centroid, args.iterations)
                seconds = time.perf_counter() - started
                error_m, error_deg = bench.pose_error(T, example.T_cam_obj)
                rows.append((occlusion, use_depth, error_m * 1000, error_deg))
                print(
                    f"{object_id:22s} seed {seed} occlusion {occlusion:6.1%} depth {use_depth!s:5} "
                    f"-> {error_m * 1000:6.2f} mm {error_deg:5.2f} deg ({seconds:.1f} s)",
                    flush=True,
                )
    print("\nocclusion bin     terms        frames  median mm  median deg  share < 2 mm & < 1 deg")
    for low, high in ((0.0, 0.005), (0.005, 0.05), (0.05, 0.15), (0.15, 1.0)):
        for use_depth in (False, True):
            chosen = [r for r in rows if low <= r[0] < high and r[1] == use_depth]
            if chosen:
                mm, deg = np.array([r[2] for r in chosen]), np.array([r[3] for r in chosen])
                print(
                    f"[{low:5.1%}, {high:5.1%})  {'rgb+mask+depth' if use_depth else 'rgb+mask':14s} "
                    f"{len(chosen):4d}  {np.median(mm):9.2f}  {np.median(deg):10.2f}  "
                    f"{np.mean((mm < 2) & (deg < 1)):6.0%}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
