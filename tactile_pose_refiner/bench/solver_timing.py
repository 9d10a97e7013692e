"""The tracker's solver timed on one device: per-frame solves of a recorded episode, replayed.

`dump` (here, with the whole package): the tracker's evidence of each frame (depth points,
contacts, hand points near the object, the predicted pose) and the object's SDF into one .npz.
`time` (anywhere with numpy, scipy and torch): the Levenberg-Marquardt solves of those frames on
each device asked for, median and p95 ms per frame after a warm-up. The evidence extraction
(back-projection, kinematics, nearest hand points) is not in it: it runs on the CPU either way.

    python -m tactile_pose_refiner.bench.solver_timing dump --episode DIR --out solver.npz
    python -m tactile_pose_refiner.bench.solver_timing time --input solver.npz --devices cpu,cuda
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
import torch

from tactile_pose_refiner.core.tracking.solver import PoseSolver, ResidualBlock, SdfField, SolverSettings

BLOCKS = ("depth", "touch", "penetration")


def dump(episode: str, out: str, frames: int) -> None:
    from tactile_pose_refiner.core.resources import load_config
    from tactile_pose_refiner.core.scene.assets import HandAssets, ObjectAssets
    from tactile_pose_refiner.core.scene.objects import ObjectCatalog
    from tactile_pose_refiner.core.tracking.tracker import Tracker
    from tactile_pose_refiner.io.episode_bag import read_episode

    tracker = None
    arrays: dict[str, np.ndarray] = {}
    for index, frame in enumerate(read_episode(episode)):
        if index >= frames:
            break
        if tracker is None:
            model = ObjectCatalog.from_config().load(frame.object_id)
            tracker = Tracker(ObjectAssets.build(model), HandAssets.from_config())
            result = tracker.start(frame, frame.T_cam_obj)
            continue
        result = tracker.step(frame)
        for block in tracker.blocks(tracker.evidence(frame, result.T_predicted), result.T_predicted):
            for key in ("points", "target", "side"):
                value = getattr(block, key)
                arrays[f"{index}/{block.name}/{key}"] = np.zeros(0) if value is None else value.cpu().numpy()
        arrays[f"{index}/predicted"] = result.T_predicted
    sdf = tracker.object.sdf
    config = load_config("tracker")
    np.savez_compressed(
        out,
        sdf_values=sdf.values,
        sdf_origin=sdf.origin,
        sdf_spacing=sdf.spacing,
        centroid=tracker.object.body.com,
        radius=tracker.object.body.radius,
        settings=np.array([config["solver"][key] for key in SolverSettings.__dataclass_fields__]),
        block_settings=np.array([[config[name][key] for key in ("sigma_mm", "robust_k")] for name in BLOCKS]),
        outlier_mm=np.array([config["depth"]["outlier_mm"], config["touch"]["outlier_mm"], np.inf]),
        **arrays,
    )
    print(f"solver_timing: {index} frames of {episode} -> {out}")


def time_solves(path: str, devices: list[str], repeats: int) -> None:
    stored = np.load(path)
    grid = SimpleNamespace(
        values=stored["sdf_values"],
        origin=stored["sdf_origin"],
        spacing=float(stored["sdf_spacing"]),
        upper=stored["sdf_origin"] + float(stored["sdf_spacing"]) * (np.array(stored["sdf_values"].shape) - 1),
    )
    names = list(SolverSettings.__dataclass_fields__)
    settings = SolverSettings(
        **{n: (int(v) if n == "iterations" else float(v)) for n, v in zip(names, stored["settings"])}
    )
    frames = sorted({int(key.split("/")[0]) for key in stored.files if key.endswith("/predicted")})
    for device in devices:
        for dtype in (torch.float32, torch.float64):
            field = SdfField(grid, device, dtype)
            solver = PoseSolver(field, stored["centroid"], float(stored["radius"]))
            problems = [(_blocks(stored, frame, device, dtype), stored[f"{frame}/predicted"]) for frame in frames]
            for blocks, predicted in problems[:3]:  # warm-up: kernels, allocator
                solver.solve(predicted, blocks, settings, predicted)
            ms = []
            for _ in range(repeats):
                for blocks, predicted in problems:
                    _synchronize(device)
                    started = time.perf_counter()
                    solver.solve(predicted, blocks, settings, predicted)
                    _synchronize(device)
                    ms.append((time.perf_counter() - started) * 1000)
            name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
            print(
                f"solver_timing: {device} ({name}, {str(dtype).removeprefix('torch.')}, "
                f"{torch.get_num_threads()} threads): {len(frames)} frames x {repeats}, "
                f"median {np.median(ms):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms per frame solve",
                flush=True,
            )


def _blocks(stored, frame: int, device: str, dtype) -> list[ResidualBlock]:
    blocks = []
    for row, name in enumerate(BLOCKS):
        tensor = lambda key: torch.as_tensor(stored[f"{frame}/{name}/{key}"], dtype=dtype, device=device)  # noqa: E731
        sigma_mm, robust_k = stored["block_settings"][row]
        side = stored[f"{frame}/{name}/side"]
        blocks.append(
            ResidualBlock(
                name,
                tensor("points").reshape(-1, 3),
                tensor("target"),
                float(sigma_mm) / 1000,
                tensor("side") if len(side) else None,
                float(robust_k),
                float(stored["outlier_mm"][row]) / 1000,
            )
        )
    return blocks


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="solver_timing", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dumper = commands.add_parser("dump")
    dumper.add_argument("--episode", required=True)
    dumper.add_argument("--out", required=True)
    dumper.add_argument("--frames", type=int, default=31)
    timer = commands.add_parser("time")
    timer.add_argument("--input", required=True)
    timer.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    timer.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.command == "dump":
        dump(args.episode, args.out, args.frames)
    else:
        time_solves(args.input, args.devices.split(","), args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
