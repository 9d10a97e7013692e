"""`tpr`: the command line of tactile_pose_refiner.

Subcommands (stable names, see SPEC §8): demo, generate, import-isaac, metrics, bench-render,
bench, track, soak, add-object, identify-mass. `--catalog FILE` (repeatable) on any of them adds a user's object
catalog to the bundled one for that command and every process it starts (it sets TPR_CATALOG).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable

import numpy as np


def demo(args: argparse.Namespace) -> int:
    """The main job: replay the default episode through the whole node graph (separate
    processes over Fast DDS) and print initial vs refined metrics per frame and in summary."""
    from tactile_pose_refiner.core.resources import load_config
    from tactile_pose_refiner.replay import replay_episode

    if args.live:
        return soak(
            argparse.Namespace(
                minutes=args.minutes, bag=None, estimator="classical", stall_s=60.0, composed=None, track=False
            )
        )
    config = load_config("demo")
    bag = _demo_episode(config["episode"])
    estimator = config["estimator"]
    initial = (
        f"{config['noise_setting']} noise on the ground truth"
        if estimator == "ground_truth_noise"
        else f"{estimator} estimator"
    )
    print(
        f"tpr demo: replaying {bag} through rgbd_node, tactile_node, joint_state_node, "
        f"estimator_node ({initial}), refiner_node",
        flush=True,
    )
    parameters = {
        "estimator_node": {"mode": estimator, "noise_setting": config["noise_setting"]},
        "bag_replay_node": {"rate": float(config["replay_rate"])},
        "refiner_node": {"iterations": int(args.iterations or config["iterations"])},
    }
    run = replay_episode(
        bag,
        parameters,
        config["graph_start_timeout_s"],
        config["frame_timeout_s"],
        log=lambda text: print(f"  {text}", flush=True),
    )
    rows = run.rows()
    _print_demo_rows(rows, run.frames_replayed)
    for name, (code, _, stderr) in run.exits.items():
        if code not in (0, None):
            print(f"{name} exited {code}:\n{stderr[-2000:]}", file=sys.stderr)
    return 0 if len(rows) >= 0.95 * run.frames_replayed else 1


def soak(args: argparse.Namespace) -> int:
    """The graph on a live, looping replay with the robot's settings; memory, poses, latency."""
    from pathlib import Path

    from tactile_pose_refiner.core.resources import load_config
    from tactile_pose_refiner.soak import SoakLimits, report, run_soak

    bag = Path(args.bag) if args.bag else _demo_episode(load_config("demo")["episode"])
    limits = SoakLimits(args.minutes, warmup_s=min(60.0, 20.0 * args.minutes), stall_s=args.stall_s)
    parameters = {"refiner_node": {"mode": "track"}} if args.track else None
    result = run_soak(
        bag,
        limits,
        args.estimator,
        log=lambda text: print(f"  {text}", flush=True),
        parameters=parameters,
        composed=args.composed,
    )
    for line in report(result, limits):
        print(line)
    print(result.summary(limits), flush=True)
    return 1 if result.failed(limits) else 0


def _demo_episode(episode: dict):
    """The default episode, generated once into the cache (tpr generate's format)."""
    from tactile_pose_refiner.core.resources import cache_dir
    from tactile_pose_refiner.io.episode_bag import write_episode
    from tactile_pose_refiner.sim.episode import EpisodeGenerator

    name = f"{episode['object']}_seed{episode['seed']}_{episode['frames']}frames"
    bag = cache_dir("demo") / name
    if not (bag / "metadata.yaml").is_file():
        shutil.rmtree(bag, ignore_errors=True)
        print(
            f"tpr demo: generating the default episode ({episode['frames']} frames of {episode['object']}) into {bag}",
            flush=True,
        )
        _, frames = EpisodeGenerator().episode(episode["object"], int(episode["frames"]), int(episode["seed"]))
        write_episode(bag, frames)
    return bag


def _print_demo_rows(rows: list[dict], replayed: int) -> None:
    print(
        f"\n{'frame':>5} {'PE cm':>13} {'OE deg':>13} {'IV cm3':>13} {'CA cm2':>13} "
        f"{'refine ms':>9} {'latency ms':>10}  status"
    )
    for k, r in enumerate(rows):
        arrow = lambda a, b: f"{r.get(a, float('nan')):5.2f}->{r.get(b, float('nan')):5.2f}"  # noqa: E731
        print(
            f"{k:>5} {arrow('pe_before', 'pe_after'):>13} {arrow('oe_before', 'oe_after'):>13} "
            f"{arrow('iv_before', 'iv_after'):>13} {arrow('ca_before', 'ca_after'):>13} "
            f"{r['refine_ms']:9.0f} {r['latency_ms']:10.0f}  {r['status']}"
        )
    if not rows:
        print("no frame was refined")
        return
    mean = lambda key: float(np.nanmean([r.get(key, np.nan) for r in rows]))  # noqa: E731
    print(
        f"\nrefined {len(rows)}/{replayed} frames; mean initial -> refined: "
        f"PE {mean('pe_before'):.2f} -> {mean('pe_after'):.2f} cm, "
        f"OE {mean('oe_before'):.2f} -> {mean('oe_after'):.2f} deg, "
        f"IV {mean('iv_before'):.2f} -> {mean('iv_after'):.2f} cm3, "
        f"CA {mean('ca_before'):.2f} -> {mean('ca_after'):.2f} cm2; "
        f"refinement {mean('refine_ms'):.0f} ms, end-to-end latency {mean('latency_ms'):.0f} ms per frame"
    )


def generate(args: argparse.Namespace) -> int:
    """Generate rosbag2 episodes of grasped YCB objects (see sim/episode.py)."""
    from pathlib import Path

    from tqdm import tqdm

    from tactile_pose_refiner.core.resources import ResourceError
    from tactile_pose_refiner.io.episode_bag import EpisodeWriter
    from tactile_pose_refiner.sim.episode import EpisodeGenerator
    from tactile_pose_refiner.sim.realism import RealismError

    try:
        generator = EpisodeGenerator(args.realism, args.motion, args.forces)
        object_ids = generator.catalog.resolve_ids(args.objects)
    except (ResourceError, RealismError, ValueError) as exc:
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
                f"{np.mean(info.occlusion):.1%}, frames occluded {np.mean(np.array(info.occlusion) > 0):.0%}; "
                f"taxels in contact per frame median {np.median(info.taxels_in_contact):.0f} "
                f"(min {min(info.taxels_in_contact)}, max {max(info.taxels_in_contact)})"
                + (f"; realism {_realism_summary(info.realism)}" if info.realism else "")
                + (f"; in-hand motion {_motion_summary(info.motion)}" if info.motion else "")
                + (f"; forces {_dynamics_summary(info.dynamics)}" if info.dynamics else "")
            )
    return 0


def _dynamics_summary(record: dict) -> str:
    return (
        f"balanced for {record['mass_kg'] * 1000:.0f} g (worst residual {record['worst_balance_residual_n']:.1e} N), "
        f"frames outside the friction cones {record['frames_outside_friction_cones']}"
    )


def _motion_summary(record: dict) -> str:
    return (
        f"turn {record['turn_rate_deg_s']:.1f} deg/s, slip {record['slip_mm_s']:.1f} mm/s, "
        f"{record['regrasp_finger']} lifted over steps {record['regrasp_steps'][0]}-{record['regrasp_steps'][1]}, "
        f"max penetration {record['max_penetration_mm']:.2f} mm"
    )


def _realism_summary(record: dict) -> str:
    """The drawn calibration errors in one line."""
    parts = [record["preset"]]
    if "encoder_offset_deg" in record:
        parts.append(f"encoder offsets rms {np.sqrt(np.mean(np.square(record['encoder_offset_deg']))):.1f} deg")
    if "base_error_translation_m" in record:
        parts.append(
            f"hand base off {1000 * np.linalg.norm(record['base_error_translation_m']):.1f} mm, "
            f"{np.linalg.norm(record['base_error_rotation_deg']):.1f} deg"
        )
    parts.append(f"mask outline {record['mask_bias_px']:+.1f} px, depth bias {1000 * record['depth_bias_m']:+.1f} mm")
    if "dead_taxels" in record:
        parts.append(
            f"{len(record['dead_taxels'])} dead taxels, touch latency {record['touch_latency_frames']} frame(s)"
        )
    return ", ".join(parts)


def import_isaac(args: argparse.Namespace) -> int:
    """Convert an Isaac Sim folder (Replicator's BasicWriter: io/basic_writer.py; else the layout
    of io/isaac_import.py) to rosbag2."""
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
            frames = isaac_frames(args.source, args.prim, args.label)
            for frame in tqdm(frames, unit="frame", desc="tpr import-isaac"):
                writer.write(frame)
    except IsaacImportError as exc:  # the writer leaves no partial episode behind
        print(f"tpr import-isaac: {exc}", file=sys.stderr)
        return 2
    return 0


def bench_render(args: argparse.Namespace) -> int:
    """ms per forward+backward of the rendering gradient per backend and window size."""
    from tactile_pose_refiner.bench import render_bench

    return render_bench.main(args.options)


def metrics(args: argparse.Namespace) -> int:
    """Per-source gradient and per-metric timings on one frame (see bench/frame_timing.py)."""
    from tactile_pose_refiner.bench import frame_timing

    rows = frame_timing.run(
        args.object,
        args.episode,
        args.frame,
        args.seed,
        args.repeats,
        args.offset_mm,
        args.offset_deg,
        tuple(args.sources.split(",")),
        args.threads,
    )
    frame_timing.print_rows(rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(rows, stream, indent=1)
    return 0


def bench(args: argparse.Namespace) -> int:
    """Methods over episodes in the paper's table layout (see bench/refine_bench.py)."""
    from tactile_pose_refiner.bench import refine_bench

    return refine_bench.main(args.options)


def track(args: argparse.Namespace) -> int:
    """The tracker over episodes, every frame, against the ground truth (see bench/track_bench.py)."""
    from tactile_pose_refiner.bench import track_bench

    return track_bench.main(args.options)


def train_estimator(args: argparse.Namespace) -> int:
    """Train the learned estimator for objects on generated (or recorded) episodes."""
    from pathlib import Path

    from tactile_pose_refiner.bench.refine_bench import episodes_under
    from tactile_pose_refiner.core.estimation.learned import checkpoint_path
    from tactile_pose_refiner.core.estimation.model_cloud import ModelCloud
    from tactile_pose_refiner.core.estimation.training import examples, train
    from tactile_pose_refiner.core.resources import load_config
    from tactile_pose_refiner.core.scene.assets import HandAssets
    from tactile_pose_refiner.core.scene.objects import ObjectCatalog
    from tactile_pose_refiner.io.episode_bag import object_frames
    from tactile_pose_refiner.sim.episode import training_frames

    config = load_config("estimator")
    options = config["learned"]["train"]
    for key in ("episodes", "steps", "epochs"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    catalog, hand = ObjectCatalog.from_config(), HandAssets.from_config()
    try:
        object_ids = catalog.resolve_ids(args.object)
    except ValueError as exc:
        print(f"tpr train-estimator: {exc}", file=sys.stderr)
        return 2
    for object_id in object_ids:
        cloud = ModelCloud.build(catalog.load(object_id), config["model"], config["symmetry"])
        if args.data:
            bags = episodes_under(Path(args.data))
            frames, total = object_frames(bags, object_id), None
        else:
            frames = training_frames(object_id, int(options["episodes"]), int(options["steps"]))
            total = int(options["episodes"]) * int(options["steps"])
        found = examples(frames, hand, config, total)
        if not found:
            print(f"tpr train-estimator: no usable training frames of {object_id}", file=sys.stderr)
            return 2
        out = Path(args.out) / f"{object_id}.pt" if args.out else checkpoint_path(object_id, config["learned"])
        summary = train(cloud, found, config, out)
        held = summary["held_out_add_cm"]
        print(
            f"tpr train-estimator: {object_id}: {summary['train_frames']} training frames, "
            f"{summary['held_out_frames']} held out; {summary['seconds']:.0f} s; held-out ADD(-S) of the "
            f"network pose {'-' if held is None else f'{held:.2f} cm'}; wrote {out} "
            f"({summary['checkpoint_kb']:.0f} kB)",
            flush=True,
        )
    return 0


def config(args: argparse.Namespace) -> int:
    """Check a config folder (default: the package's) against every definition."""
    from tactile_pose_refiner import config_check

    return config_check.main(args.folder)


def identify_mass(args: argparse.Namespace) -> int:
    """Each held object's mass from its episodes' touch."""
    from tactile_pose_refiner import identify_mass as identifier

    return identifier.main(args)


def add_object(args: argparse.Namespace) -> int:
    """Check a user's mesh and write its entry into their catalog file."""
    from tactile_pose_refiner import add_object as adder

    return adder.main(args)


CATALOG_HELP = "a user's object catalog (YAML, `objects:`) merged over the bundled one; repeatable; env TPR_CATALOG"


def take_catalogs(argv: list[str]) -> tuple[list[str], list[str]]:
    """argv without its `--catalog FILE` / `--catalog=FILE` options, and those files (any
    command, including those that pass their options on to their own parser)."""
    rest, catalogs = [], []
    words = iter(argv)
    for word in words:
        if word == "--catalog":
            catalogs.append(next(words, ""))
        elif word.startswith("--catalog="):
            catalogs.append(word.split("=", 1)[1])
        else:
            rest.append(word)
    return rest, catalogs


def use_catalogs(catalogs: list[str]) -> None:
    """The catalogs for this command and every process it starts (bench workers, nodes)."""
    import os
    from pathlib import Path

    from tactile_pose_refiner.core.scene.objects import CATALOG_ENV

    paths = [str(Path(c).expanduser().resolve()) for c in catalogs]
    os.environ[CATALOG_ENV] = os.pathsep.join(
        paths + [p for p in os.environ.get(CATALOG_ENV, "").split(os.pathsep) if p]
    )


def catalog_problem() -> str | None:
    """Why the user's catalogs (TPR_CATALOG) cannot be read, before any process starts on them."""
    from tactile_pose_refiner.core.resources import ResourceError
    from tactile_pose_refiner.core.scene.objects import read_catalog_file, user_catalog_paths

    try:
        for path in user_catalog_paths():
            read_catalog_file(path)
    except ResourceError as exc:  # a missing or unparsable file, or a bad entry
        return str(exc)
    return None


def positive(kind: type) -> Callable[[str], int | float]:
    """An argparse type: a number of `kind` above zero, else a usage error naming the value."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tpr", description=__doc__.splitlines()[0], epilog=f"--catalog FILE (any command): {CATALOG_HELP}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    adder = commands.add_parser("add-object", help="check a mesh and write its entry into your own catalog file")
    adder.add_argument("mesh", help="mesh file (any format trimesh reads; OBJ textures via their material)")
    adder.add_argument("--id", required=True, help="catalog id of the object")
    adder.add_argument("--mass", type=positive(float), required=True, help="mass [kg]")
    adder.add_argument("--catalog", required=True, help="your catalog file (created if absent; never the package's)")
    adder.add_argument(
        "--scale", type=positive(float), default=1.0, help="vertices times this are metres (0.001: millimetres)"
    )
    adder.set_defaults(handler=add_object)
    masses = commands.add_parser("identify-mass", help="each held object's mass from its episodes' touch")
    masses.add_argument("--data", required=True, help="folder of rosbag2 episodes (tpr generate --forces balanced)")
    masses.add_argument("--json", help="write {per_object: {ID: {mass_kg, truth_kg, error_pct, std_kg}}, ...} here")
    masses.add_argument(
        "--poses", choices=("tracked", "truth"), help="object poses for the accelerations (default: config/mass.yaml)"
    )
    masses.add_argument("--gravity", help="X,Y,Z gravity in the camera frame [m/s^2] where the episodes lack it")
    masses.set_defaults(handler=identify_mass)
    demo_parser = commands.add_parser("demo", help="refine the default episode through the node graph")
    demo_parser.add_argument(
        "--iterations", type=int, default=0, help="refiner iterations per frame (0: config/demo.yaml's)"
    )
    demo_parser.add_argument(
        "--live", action="store_true", help="a live feed instead: the episode looped and re-stamped, robot settings"
    )
    demo_parser.add_argument("--minutes", type=positive(float), default=2.0, help="with --live: how long")
    demo_parser.set_defaults(handler=demo)
    soaker = commands.add_parser("soak", help="the graph left running on a live looping replay, measured")
    soaker.add_argument("--minutes", type=positive(float), default=30.0)
    soaker.add_argument("--bag", help="episode to loop (default: the demo episode)")
    soaker.add_argument("--estimator", default="classical", help="estimator_node mode")
    soaker.add_argument(
        "--stall-s", type=positive(float), default=60.0, help="no refined pose for this long is a stall"
    )
    soaker.add_argument("--track", action="store_true", help="refiner_node in mode track: a pose on every frame")
    soaker.add_argument(
        "--composed",
        nargs="?",
        const="all",
        choices=("all", "sensors", "two"),
        help="the refinement nodes sharing processes (graph.COMPOSITIONS): all (one process, the default), "
        "sensors (the three sensor nodes in one), two (sensor nodes; estimator and refiner)",
    )
    soaker.set_defaults(handler=soak)
    gen = commands.add_parser("generate", help="generate rosbag2 episodes of grasped objects")
    gen.add_argument("--objects", default="all", help="'all' or comma-separated object ids")
    gen.add_argument("--episodes", type=positive(int), default=1, help="episodes per object")
    gen.add_argument("--steps", type=positive(int), default=100, help="frames per episode")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, help="output directory (one bag per episode)")
    gen.add_argument(
        "--realism",
        default="clean",
        help="sensor and calibration errors of a real robot: a preset of config/realism.yaml "
        "(clean, realistic, harsh); clean: exact hand, small noise",
    )
    gen.add_argument(
        "--motion",
        default="arm",
        choices=("arm", "in_hand"),
        help="arm: the object rests in the hand while the arm moves; in_hand: it also turns, slips and is "
        "regrasped in the hand (config/generator.yaml in_hand)",
    )
    gen.add_argument(
        "--forces",
        default="penetration",
        choices=("penetration", "balanced"),
        help="penetration: each taxel reads how far the object presses in; balanced: those forces corrected to "
        "carry the object's weight and accelerations, calibrated readings (tpr identify-mass)",
    )
    gen.set_defaults(handler=generate)
    isaac = commands.add_parser("import-isaac", help="Isaac Sim Replicator folder -> rosbag2 episode")
    isaac.add_argument("source", help="a BasicWriter output folder with tpr_<k>.json sidecars (docs/data.md)")
    isaac.add_argument("--out", required=True, help="output rosbag2 directory")
    isaac.add_argument("--prim", help="BasicWriter: the object's prim path (default: the sidecar's object_prim)")
    isaac.add_argument("--label", help="BasicWriter: the object's semantic class, instead of a prim path")
    isaac.set_defaults(handler=import_isaac)
    timing = commands.add_parser("metrics", help="gradient and metric timings on one frame")
    timing.add_argument("--object", default="008_pudding_box", help="object of a generated frame")
    timing.add_argument("--episode", help="rosbag2 episode to take the frame from instead")
    timing.add_argument("--frame", type=int, default=0, help="frame index in --episode")
    timing.add_argument("--seed", type=int, default=0)
    timing.add_argument("--repeats", type=positive(int), default=20, help="timed calls per item (median)")
    timing.add_argument("--offset-mm", type=float, default=4.0, help="pose offset from the truth")
    timing.add_argument("--offset-deg", type=float, default=4.0)
    timing.add_argument("--sources", default="physics,depth,tactile,render")
    timing.add_argument(
        "--threads",
        type=positive(int),
        default=1,
        help="torch CPU threads (the sources' tensors are small: 1 is fastest here)",
    )
    timing.add_argument("--json", help="also write the rows to this file")
    timing.set_defaults(handler=metrics)
    trainer = commands.add_parser("train-estimator", help="train the learned initial pose estimator")
    trainer.add_argument("--object", default="008_pudding_box", help="object id(s), comma-separated, or 'all'")
    trainer.add_argument("--data", help="train on the episodes under this folder instead of generating")
    trainer.add_argument("--episodes", type=positive(int), help="generated episodes (default: config/estimator.yaml)")
    trainer.add_argument("--steps", type=positive(int), help="frames per generated episode")
    trainer.add_argument("--epochs", type=positive(int))
    trainer.add_argument("--out", help="checkpoint folder (default: the cache's estimator/)")
    trainer.set_defaults(handler=train_estimator)
    checker = commands.add_parser("config", help="check a config folder: unknown keys, wrong types")
    checker.add_argument(
        "--check",
        dest="folder",
        nargs="?",
        const=None,
        default=None,
        help="folder of config/*.yaml files (default: the package's config/)",
    )
    checker.set_defaults(handler=config)
    # prefix_chars="+": every option after the name goes to the benchmark's own parser.
    render = commands.add_parser(
        "bench-render",
        add_help=False,
        prefix_chars="+",
        help="ms per fwd+bwd of the rendering gradient per backend and ROI size",
    )
    render.add_argument("options", nargs="*", help="see tpr bench-render --help")
    render.set_defaults(handler=bench_render)
    table = commands.add_parser(
        "bench", add_help=False, prefix_chars="+", help="refinement methods over episodes, the paper's tables"
    )
    table.add_argument("options", nargs="*", help="see tpr bench --help")
    table.set_defaults(handler=bench)
    tracking = commands.add_parser(
        "track", add_help=False, prefix_chars="+", help="the tracker over episodes: rate and error per frame"
    )
    tracking.add_argument("options", nargs="*", help="see tpr track --help")
    tracking.set_defaults(handler=track)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["add-object"]:  # its --catalog is the file it writes, not one to read
        args = build_parser().parse_args(argv)
    else:
        argv, catalogs = take_catalogs(argv)
        if catalogs:
            use_catalogs(catalogs)
        problem = catalog_problem()
        if problem:
            print(f"tpr: {problem}", file=sys.stderr)
            return 2
        args = build_parser().parse_args(argv)
    started = time.perf_counter()
    code = args.handler(args)
    print(f"tpr {args.command}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
