"""`tpr bench`: methods over recorded episodes, in the paper's table layout (paper §V, SPEC §8).

For every chosen frame of every episode under --data, each initial-pose setting gives one initial
pose (the same for every method): a noise setting draws it from the ground truth
(core/initial_noise.py), an estimator setting (classical, learned) estimates it from the frame
alone (core/estimation). Each method refines it, and the frame's metrics are taken against the
ground truth. Frames run in parallel
worker processes (one torch thread each). Means over frames are printed beside the paper's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from tactile_pose_refiner.core.resources import load_config

METRICS = ("pe_cm", "oe_deg", "ca_cm2", "iv_cm3", "dca_cm2", "div_cm3", "sd_cm")


def episodes_under(data: Path) -> list[Path]:
    """Every rosbag2 episode folder at or below `data`, sorted."""
    if (data / "metadata.yaml").is_file():
        return [data]
    found = set(data.glob("*/metadata.yaml")) | set(data.rglob("metadata.yaml"))  # glob: symlinks too
    return sorted(path.parent for path in found)


def episodes_to_run(data: Path) -> tuple[list[Path], str | None]:
    """The episodes under `data`, or why a run on them cannot start (none there, or one that
    cannot be opened: a recording cut short has no MCAP footer)."""
    from tactile_pose_refiner.io.episode_bag import unreadable_episodes

    episodes = episodes_under(data)
    if not episodes:
        return [], f"no rosbag2 episodes under {data}"
    if unreadable := unreadable_episodes(episodes):
        return [], "cannot read " + "; ".join(unreadable)
    return episodes, None


def frame_indices(count: int, wanted: int | None) -> list[int]:
    """`wanted` frames spread evenly over an episode of `count` frames (all when None)."""
    if wanted is None or wanted >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, wanted)})


# --- worker side -------------------------------------------------------------------------------
_benches: dict = {}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_job(job: dict) -> list[dict]:
    """One episode's chosen frames: a record per (frame, occlusion, noise setting, method)."""
    from tactile_pose_refiner.bench.methods import ObjectBench
    from tactile_pose_refiner.core.estimation import ESTIMATORS
    from tactile_pose_refiner.core.initial_noise import InitialPoseNoise
    from tactile_pose_refiner.core.occlusion import occluded
    from tactile_pose_refiner.core.scene.hand import HandUnusable
    from tactile_pose_refiner.core.scene.objects import ObjectCatalog
    from tactile_pose_refiner.core.scene.skin import fingers_in_contact
    from tactile_pose_refiner.io.episode_bag import read_episode

    episode = Path(job["episode"])
    noise = {setting: InitialPoseNoise(setting) for setting in job["noise"] if setting not in ESTIMATORS}
    records = []
    for index, frame in enumerate(read_episode(episode)):
        if index not in job["frames"]:
            continue
        if frame.T_cam_obj is None:
            raise ValueError(f"{episode} frame {index} has no ground-truth pose")
        if frame.object_id not in _benches:
            _benches[frame.object_id] = ObjectBench(ObjectCatalog.from_config().load(frame.object_id), job["estimator"])
        bench = _benches[frame.object_id]
        if index == min(job["frames"]):
            bench.refiner.hand.forget()  # another episode: other encoder offsets and calibration
        true_hand = bench.refiner.hand.posed_true(frame)  # the hand as it is: the metrics' hand
        if isinstance(true_hand, HandUnusable):
            raise ValueError(f"{episode} frame {index}: {true_hand}")
        truth = bench.truth(frame, true_hand)
        key = f"{episode.name}/{index}"
        touching = fingers_in_contact(frame.tactile, bench.refiner.hand.contact_threshold, _finger_links())
        for occlusion in job["occlusion"]:
            seen = frame if occlusion is None else occluded(frame, occlusion / 100.0, key)
            seen_key = key if occlusion is None else f"{key}/occlusion {occlusion}"  # estimates per view
            posed = bench.refiner.hand.posed(seen)  # the hand as the robot senses it
            if isinstance(posed, HandUnusable):
                raise ValueError(f"{episode} frame {index}: {posed}")
            common = {
                "episode": episode.name,
                "episode_path": str(episode),
                "frame": index,
                "object": frame.object_id,
                "realism": (frame.realism or {}).get("preset", "clean"),
                "truth": truth,
                "T_gt": frame.T_cam_obj.tolist(),
                **_hand_record(bench.refiner.hand, frame, posed, true_hand),
                "fingers_in_contact": len(touching),
                **({} if occlusion is None else {"occlusion_pct": occlusion}),
            }
            for setting in job["noise"]:
                estimated = None
                if setting in noise:
                    T0 = noise[setting].noisy(frame.T_cam_obj, bench.refiner.object.body.com, key)
                else:
                    estimate = bench.estimate(setting, seen, seen_key)
                    if not estimate.ok:
                        print(
                            f"tpr bench: {key}: the {setting} estimator gave no pose ({estimate.status}); "
                            "frame left out of that setting",
                            file=sys.stderr,
                            flush=True,
                        )
                        continue
                    T0, estimated = estimate.T, _estimate_record(estimate, frame.T_cam_obj)
                trace_hand = true_hand if job["trace"] else None
                for method in job["methods"]:
                    result = bench.run(method, seen, T0, posed, job["iterations"], trace=trace_hand, key=seen_key)
                    if method == "initial" and estimated:  # the initial pose took the estimator's time
                        result.ms = estimated["ms"]
                    record = {
                        **common,
                        "noise": setting,
                        "setting": setting if occlusion is None else f"{setting}, occlusion {occlusion}%",
                        "method": method,
                        "ms": result.ms,
                        "status": result.status,
                        **bench.metrics(result.T, frame.T_cam_obj, true_hand, truth),
                        "T_initial": T0.tolist(),
                        "T": result.T.tolist(),
                    }
                    if result.trace:
                        record["trace"] = result.trace
                    if estimated:
                        record["estimate"] = estimated
                    records.append(record)
    return records


@lru_cache(maxsize=1)
def _finger_links() -> dict[str, list[str]]:
    """Finger -> its links, proximal to distal (config/generator.yaml)."""
    return {name: finger["links"] for name, finger in load_config("generator")["fingers"].items()}


def _hand_record(hand, frame, posed, true_hand) -> dict:
    """What the hand correction did, and the fingertips' mean distance to the true ones [mm] as
    the encoders place them and as the refinement used them (episodes that record the true hand)."""
    correction = posed.correction
    record = {"hand_correction": None if correction is None else correction.summary()}
    if frame.joint_positions_true is None and frame.T_cam_base_true is None:
        return record
    sensed = hand.posed_sensed(frame)
    tips = [links[-1] for links in _finger_links().values()]
    record["fingertip_error_mm"] = {
        "sensed": fingertip_distance_mm(sensed, true_hand, tips),
        "used": fingertip_distance_mm(posed, true_hand, tips),
    }
    return record


def fingertip_distance_mm(a, b, links: list[str]) -> float:
    """Mean distance [mm] between the origins of `links` in two PosedHands."""
    return 1000.0 * float(
        np.mean(
            [
                np.linalg.norm(
                    (a.T_frame_base @ a.link_poses[link])[:3, 3] - (b.T_frame_base @ b.link_poses[link])[:3, 3]
                )
                for link in links
            ]
        )
    )


def _estimate_record(estimate, T_gt) -> dict:
    """What the estimator said of a frame; for the learned one also the network's own pose error
    (before the ICP polish)."""
    from tactile_pose_refiner.core.metrics import orientation_error_deg, position_error_cm

    record = {
        "source": estimate.source,
        "status": estimate.status,
        "confidence": estimate.confidence,
        "ms": estimate.ms,
    }
    network = estimate.details.get("network_T")
    if network is not None:
        record.update(
            network_pe_cm=position_error_cm(network, T_gt), network_oe_deg=orientation_error_deg(network, T_gt)
        )
    return record


# --- aggregation and printing ------------------------------------------------------------------
def summarise(records: list[dict]) -> dict:
    """setting (the noise, with the occlusion where swept) -> method -> {metric means,
    ms_per_frame, n_frames, per_object}."""
    grouped: dict = defaultdict(lambda: defaultdict(list))
    for record in records:
        grouped[record.get("setting", record["noise"])][record["method"]].append(record)
    return {noise: {method: _means(rows) for method, rows in methods.items()} for noise, methods in grouped.items()}


def _means(rows: list[dict]) -> dict:
    """Metric means (NaN for a metric older records lack), SR: the share [%] of frames whose SD
    stays under the success displacement (config/physics.yaml stability)."""
    summary = {metric: float(np.mean([r.get(metric, np.nan) for r in rows])) for metric in METRICS}
    success_cm = 100.0 * float(load_config("physics")["stability"]["success_displacement_m"])
    displacements = np.array([r.get("sd_cm", np.nan) for r in rows], dtype=np.float64)
    if all("oe_sym_deg" in r for r in rows):
        summary["oe_sym_deg"] = float(np.mean([r["oe_sym_deg"] for r in rows]))
    summary["sr"] = float(np.mean(displacements < success_cm) * 100.0) if np.isfinite(displacements).all() else np.nan
    summary["ms_per_frame"] = float(np.mean([r["ms"] for r in rows]))
    summary["ms_median_per_frame"] = float(np.median([r["ms"] for r in rows]))
    summary["n_frames"] = len(rows)
    summary["degraded_frames"] = sum(r["status"] != "ok" for r in rows)
    objects = defaultdict(list)
    for r in rows:
        objects[r["object"]].append(r)
    if len(objects) > 1:
        summary["per_object"] = {name: _means(group) for name, group in sorted(objects.items())}
    return summary


def truth_means(records: list[dict]) -> dict:
    frames = {(r["episode"], r["frame"]): r["truth"] for r in records}
    return {key: float(np.mean([t.get(key, np.nan) for t in frames.values()])) for key in ("ca_cm2", "iv_cm3", "sd_cm")}


def table(noise: str, methods: dict, truth: dict, paper: dict) -> str:
    """The paper's layout (PE, OE, CA, IV, |dCA|, |dIV|), DeepSimHO's SD and SR, ms/frame;
    paper's values in brackets."""
    header = (
        f"{'Method':<14}{'PE cm':>14}{'OE deg':>15}{'CA cm2':>15}{'IV cm3':>15}"
        f"{'|dCA|':>15}{'|dIV|':>15}{'SD cm':>15}{'SR %':>7}{'ms/frame':>10}{'n':>5}"
    )
    lines = [f"noise: {noise}   (ours [paper])", header, "-" * len(header)]
    gt_paper = paper.get("ground_truth", {})
    lines.append(
        f"{'Ground truth':<14}{'-':>14}{'-':>15}{_cell(truth['ca_cm2'], gt_paper.get('ca_cm2'))}"
        f"{_cell(truth['iv_cm3'], gt_paper.get('iv_cm3'))}{'0':>15}{'0':>15}{truth['sd_cm']:>15.2f}{'-':>7}"
    )
    for method, row in methods.items():
        ref = paper.get(method.partition("@")[0], {}) if "@" not in method else {}
        cells = "".join(_cell(row[m], ref.get(m)) for m in METRICS)
        lines.append(f"{method:<14}{cells}{row['sr']:>7.0f}{row['ms_per_frame']:>10.0f}{row['n_frames']:>5}")
    return "\n".join(lines)


def _cell(value: float, paper: float | None) -> str:
    text = f"{value:.2f}" + (f" [{paper:.2f}]" if paper is not None else "")
    return f"{text:>15}"


def changes(methods: dict) -> str:
    """Relative change of 'ours' (and the baselines) against the initial pose, per metric."""
    if "initial" not in methods:
        return ""
    initial = methods["initial"]
    lines = ["change vs initial (negative = better):"]
    for method, row in methods.items():
        if method == "initial":
            continue
        parts = [
            f"{m} {100.0 * (row[m] - initial[m]) / initial[m]:+.1f}%"
            for m in ("pe_cm", "oe_deg", "div_cm3")
            if initial[m] > 0
        ]
        lines.append(f"  {method:<14}" + ", ".join(parts))
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tpr bench", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder holding one or more rosbag2 episodes")
    parser.add_argument(
        "--methods", default=None, help="comma-separated (default: config/bench.yaml); NAME@N runs N iterations"
    )
    parser.add_argument(
        "--noise",
        default="accurate",
        help="initial poses, comma-separated: noise settings (accurate, paper) on the ground "
        "truth and/or estimators (classical, learned) on the frame",
    )
    parser.add_argument(
        "--estimator", default=None, help="estimator of the method 'estimator' (default: config/estimator.yaml's)"
    )
    parser.add_argument("--iterations", type=int, default=None, help="refiner/ICP iterations (default: config)")
    parser.add_argument(
        "--sweep", default=None, help="iterations sweep of 'ours' (Table IV), e.g. 25,50,100,400: adds ours@N"
    )
    parser.add_argument("--frames", type=int, default=None, help="frames per episode (evenly spaced)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    parser.add_argument(
        "--occlusion",
        default=None,
        help="occlusion sweep: shares [%%] of the object's silhouette hidden, e.g. 0,25,50,75,100 (100: camera off)",
    )
    parser.add_argument("--json", help="write the summary (and every record) here")
    parser.add_argument("--report", help="write plots and overlay images into this folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    from tactile_pose_refiner.bench.methods import check_methods
    from tactile_pose_refiner.core.estimation import ESTIMATORS, CheckpointError

    args = build_parser().parse_args(argv)
    config = load_config("bench")
    methods = (args.methods or ",".join(config["methods"])).split(",")
    if args.sweep:
        methods += [f"ours@{n}" for n in args.sweep.split(",")]
    noise = args.noise.split(",")
    try:
        occlusion = occlusion_levels(args.occlusion)
    except ValueError as exc:
        print(f"tpr bench: {exc}", file=sys.stderr)
        return 2
    try:
        check_methods(methods, load_config("refiner")["variants"])
        known = sorted(config["noise"]) + list(ESTIMATORS)
        unknown = [n for n in noise if n not in known] + (
            [args.estimator] if args.estimator and args.estimator not in ESTIMATORS else []
        )
        if unknown:
            raise ValueError(f"unknown initial-pose setting(s) {unknown}; known: {known}")
    except ValueError as exc:
        print(f"tpr bench: {exc}", file=sys.stderr)
        return 2
    episodes, problem = episodes_to_run(Path(args.data))
    if problem:
        print(f"tpr bench: {problem}", file=sys.stderr)
        return 2
    jobs = _jobs(episodes, args, methods, noise, occlusion)
    workers = max(1, min(args.workers or os.cpu_count() or 1, len(jobs)))
    total = sum(len(job["frames"]) for job in jobs)
    print(
        f"tpr bench: {len(episodes)} episode(s), {total} frame(s), methods {','.join(methods)}, "
        f"noise {','.join(noise)}, {workers} worker process(es)",
        flush=True,
    )
    try:
        records = _run(jobs, workers, total)
    except CheckpointError as exc:
        print(f"tpr bench: {exc}", file=sys.stderr)
        return 2
    summary = summarise(records)
    truth = truth_means(records)
    for setting in settings(noise, occlusion):
        ordered = {m: summary[setting][m] for m in methods if m in summary.get(setting, {})}
        print()
        # an estimator's rows stand beside the paper's estimator (its Table I, `accurate`)
        print(table(setting, ordered, truth, config["paper_tables"].get(setting, config["paper_tables"]["accurate"])))
        print(changes(ordered))
    if args.json:
        _write_json(args, methods, noise, occlusion, summary, truth, records)
    if args.report:
        from tactile_pose_refiner.bench.report import write_report

        for path in write_report(Path(args.report), records, summary, methods):
            print(f"tpr bench: wrote {path}")
    return 0


def _run(jobs: list[dict], workers: int, total: int) -> list[dict]:
    """Every job's records, in worker processes when workers > 1, with a progress bar."""
    from tqdm import tqdm

    records = []
    with tqdm(total=total, unit="frame", desc="tpr bench") as progress:
        if workers == 1:
            _worker_init(1)
            results = map(run_job, jobs)
        else:
            pool = multiprocessing.get_context("spawn").Pool(workers, _worker_init, (1,))
            results = pool.imap_unordered(run_job, jobs)
        try:
            for job_records in results:
                records.extend(job_records)
                progress.update(len({(r["episode"], r["frame"]) for r in job_records}))
        finally:
            if workers > 1:
                pool.terminate()
                pool.join()
    return records


def _jobs(episodes: list[Path], args, methods: list[str], noise: list[str], occlusion: list) -> list[dict]:
    """Each episode's frames in chunks of 5, so that workers share the load."""
    from rosbags.rosbag2 import Reader

    jobs = []
    for episode in episodes:
        with Reader(episode) as reader:
            count = max(c.msgcount for c in reader.connections)
        frames = frame_indices(count, args.frames)
        for start in range(0, len(frames), 5):
            jobs.append(
                {
                    "episode": str(episode),
                    "frames": frames[start : start + 5],
                    "methods": methods,
                    "noise": noise,
                    "iterations": args.iterations,
                    "trace": bool(args.report),
                    "estimator": args.estimator,
                    "occlusion": occlusion,
                }
            )
    return jobs


def occlusion_levels(spec: str | None) -> list:
    """--occlusion '0,25,100' -> [0, 25, 100]; no sweep -> [None] (the frames as recorded)."""
    if not spec:
        return [None]
    levels = [int(part) for part in spec.split(",") if part.strip()]
    if not levels or any(not 0 <= level <= 100 for level in levels):
        raise ValueError(f"--occlusion takes shares in percent, 0..100, got {spec!r}")
    return levels


def settings(noise: list[str], occlusion: list) -> list[str]:
    """The table settings in order: each noise setting, per occlusion level where swept."""
    return [n if level is None else f"{n}, occlusion {level}%" for level in occlusion for n in noise]


def _write_json(args, methods, noise, occlusion, summary, truth, records) -> None:
    document = {
        "config": {
            "data": args.data,
            "methods": methods,
            "noise": noise,
            "occlusion_pct": occlusion,
            "realism": sorted({r["realism"] for r in records}),
            "iterations": args.iterations,
            "frames": args.frames,
            "refiner": load_config("refiner"),
            "noise_model": load_config("bench")["noise"],
        },
        "ground_truth": truth,
        "methods": summary[settings(noise, occlusion)[0]],  # SPEC §8 layout, for the first setting
        "by_noise": summary,  # every setting: the noise, with the occlusion where swept
        "records": [{k: v for k, v in r.items() if k != "trace"} for r in records],
    }
    with open(args.json, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=1)
    print(f"tpr bench: wrote {args.json}")


if __name__ == "__main__":
    raise SystemExit(main())
