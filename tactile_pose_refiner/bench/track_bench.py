"""`tpr track`: the tracker over recorded episodes, every frame, against the ground truth.

Per episode the track starts from an initial pose (`--init`), then `Tracker.step` runs on every
later frame; a pose lost for `--recover-after` frames is re-initialised the same way (counted as
a recovery). Prints per-frame time (median, p95), the rate, PE / OE / abs(dIV) means and maxima,
the drift at the last frame, lost frames and recoveries; `--json` keeps the contract
{"frames", "ms_median", "ms_p95", "hz", "pe_mm_mean", "oe_deg_mean", "div_cm3_mean",
"lost_frames", "recoveries", "per_episode"}; `--plots DIR` draws the error over time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tactile_pose_refiner.bench.refine_bench import episodes_to_run

INITS = ("refine", "noise", "truth")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tpr track", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder of rosbag2 episodes (tpr generate's output)")
    parser.add_argument(
        "--init",
        choices=INITS,
        default="refine",
        help="the track's start and re-initialisation: refine = the full refiner from the bench's "
        "`accurate` initial noise (as the node does), noise = that noisy pose, truth = the ground truth",
    )
    parser.add_argument("--frames", type=int, help="at most this many frames per episode")
    parser.add_argument("--recover-after", type=int, default=3, help="re-initialise after this many lost frames")
    parser.add_argument(
        "--teleport-at", type=int, help="a forced loss: the track is moved 3 cm / 30 deg off before this frame"
    )
    parser.add_argument("--no-div", action="store_true", help="skip abs(dIV) (exact booleans, ~30 ms a frame)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (as refiner_node's torch_threads)")
    parser.add_argument("--json", help="write the summary and per-frame rows here")
    parser.add_argument("--plots", help="folder for error-over-time plots (one PNG per episode)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))  # small tensors: one thread is faster and steadier
    episodes, problem = episodes_to_run(Path(args.data))
    if problem:
        print(f"tpr track: {problem}", file=sys.stderr)
        return 2
    per_episode = {}
    for path in tqdm(episodes, desc="tpr track", unit="episode"):
        rows = track_episode(path, args)
        per_episode[path.name] = episode_summary(rows)
        _print_episode(path.name, per_episode[path.name])
        if args.plots:
            plot_episode(rows, Path(args.plots) / f"{path.name}.png", path.name)
        per_episode[path.name]["rows"] = rows
    summary = overall(per_episode)
    div = "" if np.isnan(summary["div_cm3_mean"]) else f", abs(dIV) {summary['div_cm3_mean']:.3f} cm3"
    print(
        f"tpr track: {summary['frames']} frames, {summary['ms_median']:.1f} ms median "
        f"(p95 {summary['ms_p95']:.1f}), {summary['hz']:.1f} Hz; PE {summary['pe_mm_mean']:.2f} mm, "
        f"OE {summary['oe_deg_mean']:.2f} deg{div}; "
        f"lost frames {summary['lost_frames']}, recoveries {summary['recoveries']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


def track_episode(path: Path, args, poses: list | None = None) -> list[dict]:
    """Per-frame rows of the tracker over one episode; `poses`, where given, gets every frame's pose."""
    from tactile_pose_refiner.bench.methods import ObjectBench
    from tactile_pose_refiner.core.initial_noise import InitialPoseNoise
    from tactile_pose_refiner.core.metrics import orientation_error_deg, position_error_cm
    from tactile_pose_refiner.core.scene.objects import ObjectCatalog
    from tactile_pose_refiner.core.tracking.tracker import Tracker
    from tactile_pose_refiner.io.episode_bag import read_episode

    bench = tracker = None
    noise = InitialPoseNoise("accurate")
    rows: list[dict] = []
    for index, frame in enumerate(read_episode(path)):
        if args.frames is not None and index >= args.frames:
            break
        if frame.T_cam_obj is None:
            raise ValueError(f"{path} frame {index} has no ground-truth pose")
        if bench is None:
            bench = ObjectBench(ObjectCatalog.from_config().load(frame.object_id))
            tracker = Tracker(bench.refiner.object, bench.refiner.hand)
        if args.teleport_at == index and tracker.started:
            tracker.T_base_obj = _teleported(tracker.T_base_obj, bench.refiner.object.body.com)
        recovering = tracker.started and tracker.lost_frames >= args.recover_after
        if tracker.recovery_due() and not recovering:  # the track tries itself before the estimate comes
            result = tracker.recover(frame)
        elif not tracker.started or recovering:
            T_start, init_ms = _initial(args.init, bench, frame, noise, f"{path.name}/{index}")
            result = tracker.start(frame, T_start)
            result.ms += init_ms
        else:
            result = tracker.step(frame)
        if poses is not None:
            poses.append(result.T)
        row = {
            "frame": index,
            "ms": result.ms,
            "status": result.status,
            "start": not rows or recovering,
            "recovery": bool(recovering) or "recovered by the track" in result.status,
            "iterations": result.iterations,
            "pe_mm": 10 * position_error_cm(result.T, frame.T_cam_obj),
            "oe_deg": orientation_error_deg(result.T, frame.T_cam_obj),
            "predicted_pe_mm": 10 * position_error_cm(result.T_predicted, frame.T_cam_obj),
        }
        if not args.no_div:
            true_hand = bench.refiner.hand.posed_true(frame)
            row["div_cm3"] = abs(
                bench.refiner.plausibility(result.T, true_hand).iv_cm3
                - bench.refiner.plausibility(frame.T_cam_obj, true_hand).iv_cm3
            )
        rows.append(row)
    return rows


def _initial(init: str, bench, frame, noise, key: str) -> tuple[np.ndarray, float]:
    """The start pose and the time it took [ms] (the refiner's wall time; noise and truth: 0)."""
    if init == "truth":
        return frame.T_cam_obj, 0.0
    T_noisy = noise.noisy(frame.T_cam_obj, bench.refiner.object.body.com, key)
    if init == "noise":
        return T_noisy, 0.0
    refinement = bench.refiner.refine(frame, T_noisy, measure=False)
    return refinement.T, refinement.diagnostics.wall_ms


def _teleported(T_base_obj: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    from tactile_pose_refiner.core.gradients.base import apply_delta

    return apply_delta(T_base_obj, np.r_[0.03, 0.0, 0.0, np.radians(30.0), 0.0, 0.0], pivot)


def episode_summary(rows: list[dict]) -> dict:
    """An episode's summary: the shared one plus maxima, drift, the longest loss, the start."""
    summary = _summary(rows)
    summary.update(
        pe_mm_max=float(np.max([r["pe_mm"] for r in rows])),
        oe_deg_max=float(np.max([r["oe_deg"] for r in rows])),
        drift_mm=rows[-1]["pe_mm"],
        drift_deg=rows[-1]["oe_deg"],
        longest_loss_frames=_longest_run([r["status"].startswith("lost") for r in rows]),
        start_ms=float(np.mean([r["ms"] for r in rows if r["start"]])),
    )
    if "div_cm3" not in rows[0]:
        del summary["div_cm3_mean"]
    else:
        summary["div_cm3_max"] = float(np.max([r["div_cm3"] for r in rows]))
    return summary


def overall(per_episode: dict) -> dict:
    """Every episode's frames together (the JSON contract's keys), per episode beside them."""
    rows = [row for episode in per_episode.values() for row in episode["rows"]]
    return {**_summary(rows), "per_episode": per_episode}


def _summary(rows: list[dict]) -> dict:
    """Time over tracked frames only (a start or a recovery is timed apart: it is the init's
    work); errors, losses and recoveries over every frame; abs(dIV) nan where not measured."""
    tracked = [r for r in rows if not r["start"]] or rows
    ms = np.array([r["ms"] for r in tracked])
    mean = lambda key: float(np.mean([r[key] for r in rows])) if key in rows[0] else float("nan")  # noqa: E731
    return {
        "frames": len(rows),
        "ms_median": float(np.median(ms)),
        "ms_p95": float(np.percentile(ms, 95)),
        "hz": float(1000.0 / np.median(ms)),
        "pe_mm_mean": mean("pe_mm"),
        "oe_deg_mean": mean("oe_deg"),
        "div_cm3_mean": mean("div_cm3"),
        "lost_frames": sum(r["status"].startswith("lost") for r in rows),
        "recoveries": sum(r["recovery"] for r in rows),
    }


def _longest_run(flags: list[bool]) -> int:
    longest = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest


def _print_episode(name: str, s: dict) -> None:
    div = f", abs(dIV) {s['div_cm3_mean']:.3f} (max {s['div_cm3_max']:.3f}) cm3" if "div_cm3_mean" in s else ""
    tqdm.write(
        f"{name}: {s['frames']} frames, {s['ms_median']:.1f} ms median (p95 {s['ms_p95']:.1f}); "
        f"PE {s['pe_mm_mean']:.2f} (max {s['pe_mm_max']:.2f}) mm, OE {s['oe_deg_mean']:.2f} "
        f"(max {s['oe_deg_max']:.2f}) deg{div}; drift {s['drift_mm']:.2f} mm / {s['drift_deg']:.2f} deg; "
        f"lost {s['lost_frames']} (longest {s['longest_loss_frames']}), recoveries {s['recoveries']}; "
        f"start {s['start_ms']:.0f} ms"
    )


def plot_episode(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [r["frame"] for r in rows]
    figure, axes = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    axes[0].plot(frames, [r["pe_mm"] for r in rows], label="tracked")
    axes[0].plot(frames, [r["predicted_pe_mm"] for r in rows], ":", label="predicted")
    axes[0].set_ylabel("PE [mm]")
    axes[0].legend(loc="upper right")
    axes[1].plot(frames, [r["oe_deg"] for r in rows])
    axes[1].set_ylabel("OE [deg]")
    axes[1].set_xlabel("frame")
    for r in rows:
        if r["status"].startswith("lost"):
            for axis in axes:
                axis.axvspan(r["frame"] - 0.5, r["frame"] + 0.5, color="red", alpha=0.15, lw=0)
    axes[0].set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
