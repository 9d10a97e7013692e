"""`tpr`: the command line of tactile_pose_refiner.

Subcommands (stable names, see SPEC §8): demo, generate, import-isaac, metrics, bench-render,
bench.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

import numpy as np

from tactile_pose_refiner.core.resources import config_path


def demo(args: argparse.Namespace) -> int:
    """Smoke run of the node graph until the refiner exists: a tactile source and an echo,
    two real rclpy processes over Fast DDS; prints what arrived and the transport latency."""
    from tactile_pose_refiner.graph import NodeProcess, RunningGraph, isolated_ros_environment

    print("tpr demo: smoke run (the refiner lands with later issues): "
          "tactile_sim_node -> DDS -> topic_echo", flush=True)
    echo = NodeProcess("topic_echo", [config_path("topic_echo")],
                       {"count": args.messages, "timeout_s": args.timeout})
    source = NodeProcess("tactile_sim_node", [config_path("tactile_sim")])
    with isolated_ros_environment() as env, RunningGraph(env) as graph:
        receiver = graph.start("topic_echo", echo)
        graph.start("tactile_sim_node", source)
        try:
            receiver.wait(timeout=args.timeout + 15)
        except Exception:  # noqa: BLE001 - reported below through the exit code
            pass
        results = graph.stop()
    code, stdout, stderr = results["topic_echo"]
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if code != 0 or len(records) < args.messages:
        print(f"FAILED: received {len(records)} of {args.messages} messages (exit {code})\n"
              f"{stderr}", file=sys.stderr)
        return 1
    latencies_ms = [(r["received_ns"] - _stamp_ns(r["message"]["header"]["stamp"])) / 1e6
                    for r in records]
    taxels = len(records[0]["message"]["taxel_ids"])
    print(f"received {len(records)} TactileArray messages of {taxels} taxels; "
          f"latency median {sorted(latencies_ms)[len(latencies_ms) // 2]:.2f} ms, "
          f"max {max(latencies_ms):.2f} ms")
    return 0


def generate(args: argparse.Namespace) -> int:
    """Generate rosbag2 episodes of grasped YCB objects (see sim/episode.py)."""
    from pathlib import Path

    from tqdm import tqdm

    from tactile_pose_refiner.core.resources import ResourceError
    from tactile_pose_refiner.io.episode_bag import EpisodeWriter
    from tactile_pose_refiner.sim.episode import EpisodeGenerator

    generator = EpisodeGenerator()
    try:
        object_ids = generator.catalog.resolve_ids(args.objects)
    except ResourceError as exc:
        print(f"tpr generate: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(object_id, k) for object_id in object_ids for k in range(args.episodes)]
    with tqdm(total=len(jobs) * args.steps, unit="frame", desc="tpr generate") as progress:
        for object_id, k in jobs:
            path = out / f"{object_id}_{k:03d}"
            if path.exists():
                print(f"tpr generate: {path} exists; remove it or choose another --out", file=sys.stderr)
                return 2
            info, frames = generator.episode(object_id, args.steps, args.seed, k)
            with EpisodeWriter(path) as writer:
                for frame in frames:
                    writer.write(frame)
                    progress.update()
            progress.write(
                f"{path.name}: fingers in contact {','.join(info.grasp.fingers_in_contact)}; "
                f"max penetration {info.grasp.max_penetration_m * 1000:.2f} mm; occlusion mean "
                f"{np.mean(info.occlusion):.1%}, frames occluded {np.mean(np.array(info.occlusion) > 0):.0%}")
    return 0


def import_isaac(args: argparse.Namespace) -> int:
    """Convert an Isaac Sim Replicator-style folder (layout: io/isaac_import.py) to rosbag2."""
    from pathlib import Path

    from tqdm import tqdm

    from tactile_pose_refiner.io.episode_bag import EpisodeWriter
    from tactile_pose_refiner.io.isaac_import import IsaacImportError, isaac_frames

    out = Path(args.out)
    if out.exists():
        print(f"tpr import-isaac: {out} exists; choose another --out", file=sys.stderr)
        return 2
    try:
        with EpisodeWriter(out) as writer:
            for frame in tqdm(isaac_frames(args.source), unit="frame", desc="tpr import-isaac"):
                writer.write(frame)
    except IsaacImportError as exc:
        shutil.rmtree(out, ignore_errors=True)  # never leave a partial episode behind
        print(f"tpr import-isaac: {exc}", file=sys.stderr)
        return 2
    return 0


def _stamp_ns(stamp: dict) -> int:
    return int(stamp["sec"]) * 1_000_000_000 + int(stamp["nanosec"])


def bench_render(args: argparse.Namespace) -> int:
    """ms per forward+backward of the rendering gradient per backend and window size."""
    from tactile_pose_refiner.core.gradients.render import bench

    return bench.main(args.options)


def metrics(args: argparse.Namespace) -> int:
    """Per-source gradient and per-metric timings on one frame (see bench/frame_timing.py)."""
    from tactile_pose_refiner.bench import frame_timing

    rows = frame_timing.run(args.object, args.episode, args.frame, args.seed, args.repeats,
                            args.offset_mm, args.offset_deg, tuple(args.sources.split(",")),
                            args.threads)
    frame_timing.print_rows(rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(rows, stream, indent=1)
    return 0


def bench(args: argparse.Namespace) -> int:
    """Methods over episodes in the paper's table layout (see bench/refine_bench.py)."""
    from tactile_pose_refiner.bench import refine_bench

    return refine_bench.main(args.options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tpr", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the node graph on the default data")
    demo_parser.add_argument("--messages", type=int, default=20, help="messages to receive")
    demo_parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait")
    demo_parser.set_defaults(handler=demo)
    gen = commands.add_parser("generate", help="generate rosbag2 episodes of grasped objects")
    gen.add_argument("--objects", default="all", help="'all' or comma-separated object ids")
    gen.add_argument("--episodes", type=int, default=1, help="episodes per object")
    gen.add_argument("--steps", type=int, default=100, help="frames per episode")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, help="output directory (one bag per episode)")
    gen.set_defaults(handler=generate)
    isaac = commands.add_parser("import-isaac", help="Isaac Sim Replicator folder -> rosbag2 episode")
    isaac.add_argument("source", help="folder in the layout of tactile_pose_refiner/io/isaac_import.py")
    isaac.add_argument("--out", required=True, help="output rosbag2 directory")
    isaac.set_defaults(handler=import_isaac)
    timing = commands.add_parser("metrics", help="gradient and metric timings on one frame")
    timing.add_argument("--object", default="008_pudding_box", help="object of a generated frame")
    timing.add_argument("--episode", help="rosbag2 episode to take the frame from instead")
    timing.add_argument("--frame", type=int, default=0, help="frame index in --episode")
    timing.add_argument("--seed", type=int, default=0)
    timing.add_argument("--repeats", type=int, default=20, help="timed calls per item (median)")
    timing.add_argument("--offset-mm", type=float, default=4.0, help="pose offset from the truth")
    timing.add_argument("--offset-deg", type=float, default=4.0)
    timing.add_argument("--sources", default="physics,depth,tactile,render")
    timing.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (the sources' tensors are small: 1 is fastest here)")
    timing.add_argument("--json", help="also write the rows to this file")
    timing.set_defaults(handler=metrics)
    # prefix_chars="+": every option after the name goes to the benchmark's own parser.
    render = commands.add_parser("bench-render", add_help=False, prefix_chars="+",
                                 help="ms per fwd+bwd of the rendering gradient per backend and ROI size")
    render.add_argument("options", nargs="*", help="see tpr bench-render --help")
    render.set_defaults(handler=bench_render)
    table = commands.add_parser("bench", add_help=False, prefix_chars="+",
                                help="refinement methods over episodes, the paper's tables")
    table.add_argument("options", nargs="*", help="see tpr bench --help")
    table.set_defaults(handler=bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    code = args.handler(args)
    print(f"tpr {args.command}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
