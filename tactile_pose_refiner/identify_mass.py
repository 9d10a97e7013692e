"""`tpr identify-mass --data DIR`: each held object's mass from its episodes' touch (core/mass.py).

The object's accelerations come from the tracker's poses (config/mass.yaml `poses: tracked`,
as `tpr track` runs it) or the ground truth (`--poses truth`); gravity in the camera frame from
the episode (balanced episodes record it) or `--gravity X,Y,Z`. Per object the episodes'
estimates are combined by their variances; with a known mass (the catalog's) the error is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tactile_pose_refiner.core.mass import JointOffsets, MassEstimate, SkinCalibration, episode_mass
from tactile_pose_refiner.core.resources import load_config

UNSEEN = "contact partly unseen: a dead taxel on the object in every episode (regrasp, or add episodes)"


def main(args: argparse.Namespace) -> int:
    from tactile_pose_refiner.bench.refine_bench import episodes_to_run

    episodes, problem = episodes_to_run(Path(args.data))
    if problem:
        print(f"tpr identify-mass: {problem}", file=sys.stderr)
        return 2
    config = load_config("mass")
    poses = args.poses or config["poses"]
    gravity = _gravity(args.gravity) if args.gravity else None
    estimates: dict[str, list[MassEstimate]] = {}
    truths: dict[str, float] = {}
    for path in tqdm(episodes, desc="tpr identify-mass", unit="episode"):
        object_id, estimate, truth = _episode(path, poses, gravity, config)
        estimates.setdefault(object_id, []).append(estimate)
        truths[object_id] = truth
        tqdm.write(f"{path.name}: {_line(estimate, truth)}")
    summary = summarise(estimates, truths)
    for object_id, entry in summary["per_object"].items():
        print(f"{object_id}: {_entry_line(entry)}")
    error = summary["mean_abs_error_pct"]
    print(
        f"tpr identify-mass: {len(summary['per_object'])} objects, "
        + (f"mean abs error {error:.1f} %" if error is not None else "no estimate")
        + f" ({poses} poses)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


def _episode(path: Path, poses: str, gravity: np.ndarray | None, config: dict) -> tuple[str, MassEstimate, float]:
    from tactile_pose_refiner.core.physics.body import RigidBody
    from tactile_pose_refiner.core.scene.assets import HandAssets
    from tactile_pose_refiner.core.scene.distance import MeshDistance
    from tactile_pose_refiner.core.scene.objects import ObjectCatalog
    from tactile_pose_refiner.io.episode_bag import read_episode

    frames = list(read_episode(path))
    assets = HandAssets.from_config()  # its hand model, placed skin layout and hand fit
    offsets = JointOffsets.from_depth(frames, assets, int(config["hand_fit_every"]))
    tqdm.write(f"{path.name}: {offsets.status}")
    frames = [offsets.applied(frame, assets.model.kinematics) for frame in frames]
    for frame in frames:  # the images are not needed any more: keep the episode small in memory
        frame.rgb = frame.depth_mm = frame.mask = None
    model = ObjectCatalog.from_config().load(frames[0].object_id)
    dynamics = frames[0].dynamics or {}
    gravity_cam = gravity if gravity is not None else np.asarray(dynamics.get("gravity_cam_m_s2", np.nan), float)
    truth = float(dynamics.get("mass_kg", model.mass_kg))
    if not np.isfinite(gravity_cam).all() or gravity_cam.shape != (3,):
        return frames[0].object_id, MassEstimate(None, None, len(frames), 0.0, "no gravity: pass --gravity"), truth
    body = RigidBody.from_mesh(model.geometry, model.mass_kg, model.com_m, model.inertia_kg_m2)
    T_cam_obj = _tracked(path) if poses == "tracked" else [frame.T_cam_obj for frame in frames]
    tactile = load_config("tactile")
    estimate = episode_mass(
        frames,
        T_cam_obj,
        body.com,
        gravity_cam,
        assets.layout,
        assets.model.kinematics,
        SkinCalibration.of(dynamics, tactile, config),
        config,
        MeshDistance(model.geometry.vertices, model.geometry.faces),
    )
    return frames[0].object_id, estimate, truth


def _tracked(path: Path) -> list[np.ndarray]:
    """The tracker's pose of every frame, as `tpr track` runs it (started by the refiner)."""
    from tactile_pose_refiner.bench.track_bench import track_episode

    args = argparse.Namespace(frames=None, teleport_at=None, recover_after=3, init="refine", no_div=True)
    poses: list[np.ndarray] = []
    track_episode(path, args, poses)
    return poses


def summarise(estimates: dict[str, list[MassEstimate]], truths: dict[str, float]) -> dict:
    """The JSON of SPEC §8: per object mass_kg, truth_kg, error_pct, std_kg (+ status, episodes,
    episodes_used). The episodes with the fewest dead taxels on the object (ideally none: the
    skin saw the whole contact) are combined by their variances; the load on such a taxel is
    missing from the sum (measured -24 to +6 %), and status says so where every episode has one."""
    per_object = {}
    for object_id, found in estimates.items():
        usable = [e for e in found if e.mass_kg is not None and e.std_kg and e.std_kg > 0]
        fewest = min((e.unseen_taxels for e in usable), default=0)
        used = [e for e in usable if e.unseen_taxels == fewest]
        entry = {"mass_kg": None, "truth_kg": truths[object_id], "error_pct": None, "std_kg": None}
        if used:
            weights = np.array([1.0 / e.std_kg**2 for e in used])
            mass = float(np.sum(weights * [e.mass_kg for e in used]) / weights.sum())
            entry.update(mass_kg=mass, std_kg=float(1.0 / np.sqrt(weights.sum())))
            entry["error_pct"] = 100.0 * (mass - truths[object_id]) / truths[object_id]
        entry["status"] = (UNSEEN if fewest else "ok") if usable else found[0].status
        entry["episodes"] = len(found)
        entry["episodes_used"] = len(used)
        per_object[object_id] = entry
    errors = [abs(e["error_pct"]) for e in per_object.values() if e["error_pct"] is not None]
    return {"per_object": per_object, "mean_abs_error_pct": float(np.mean(errors)) if errors else None}


def _gravity(text: str) -> np.ndarray:
    values = np.array([float(v) for v in text.split(",")])
    if values.shape != (3,):
        raise SystemExit("tpr identify-mass: --gravity takes X,Y,Z [m/s^2] in the camera frame")
    return values


def _line(estimate: MassEstimate, truth: float) -> str:
    if estimate.mass_kg is None:
        return estimate.status
    unseen = f"; {estimate.unseen_taxels} dead taxel(s) on the object (load unseen)" if estimate.unseen_taxels else ""
    return (
        f"{estimate.mass_kg * 1000:.0f} +- {estimate.std_kg * 1000:.0f} g (truth {truth * 1000:.0f} g), "
        f"load turned {estimate.turn_deg:.0f} deg over {estimate.frames} frames{unseen}"
    )


def _entry_line(entry: dict) -> str:
    if entry["mass_kg"] is None:
        return f"no estimate: {entry['status']}"
    used, count = entry["episodes_used"], entry["episodes"]
    used = f" (from {used} of {count} episodes)" if used < count else ""
    unseen = f"; {entry['status']}" if entry["status"] != "ok" else ""
    return (
        f"{entry['mass_kg'] * 1000:.0f} +- {entry['std_kg'] * 1000:.0f} g, truth {entry['truth_kg'] * 1000:.0f} g, "
        f"error {entry['error_pct']:+.1f} %{used}{unseen}"
    )
