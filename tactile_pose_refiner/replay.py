"""Replay an episode through the whole node graph and collect what it refined.

`tpr demo` and the graph tests use this: the refinement graph starts as separate processes
(over Fast DDS, isolated domain), an in-process GraphMonitor waits until every node runs
and has subscribed, then bag_replay_node plays the episode; the monitor collects initial and refined
poses, RefinementDiagnostics and /diagnostics until every frame is refined or a timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from tactile_pose_refiner.core.metrics import orientation_error_deg, position_error_cm
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.graph import RunningGraph, isolated_ros_environment, replay_graph

# Every input topic of the refinement graph; the replay starts once each has a subscriber.
GRAPH_INPUTS = (
    "color_image",
    "depth_image",
    "color_camera_info",
    "object_mask",
    "joint_states",
    "tactile",
    "hand_pose",
    "ground_truth_pose",
    "object_id",
)
GRAPH_INTERNAL = (
    "/rgbd/bundle",
    "/tactile/array",
    "/hand/joint_states",
    "/estimator/initial_pose",
    "/estimator/source",
)


@dataclass
class ReplayRun:
    frames_replayed: int
    frames: dict[int, dict]  # stamp -> T_gt, T_initial, T_refined, result, *_wall
    statuses: list[tuple[str, int, str]]  # every /diagnostics status: (name, level, message)
    exits: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # node -> code, out, err
    topics: dict[str, list[str]] = field(default_factory=dict)  # the graph's topics -> types, at the end

    def refined(self) -> list[dict]:
        return [self.frames[s] for s in sorted(self.frames) if "T_refined" in self.frames[s]]

    def rows(self) -> list[dict]:
        """Per refined frame: initial and refined PE/OE (with ground truth), IV/CA, latency."""
        rows = []
        for stamp in sorted(self.frames):
            entry = self.frames[stamp]
            if "result" not in entry:
                continue
            result = entry["result"]
            row = {
                "stamp_ns": stamp,
                "status": result.status,
                "iv_before": result.intersection_volume_before_cm3,
                "iv_after": result.intersection_volume_after_cm3,
                "ca_before": result.contact_area_before_cm2,
                "ca_after": result.contact_area_after_cm2,
                "refine_ms": result.wall_time_ms,
                "latency_ms": np.nan,
                "pe_before": np.nan,
                "pe_after": np.nan,
                "oe_before": np.nan,
                "oe_after": np.nan,
            }
            if "T_gt" in entry and "T_initial" in entry and "T_refined" in entry:
                row.update(
                    pe_before=position_error_cm(entry["T_initial"], entry["T_gt"]),
                    pe_after=position_error_cm(entry["T_refined"], entry["T_gt"]),
                    oe_before=orientation_error_deg(entry["T_initial"], entry["T_gt"]),
                    oe_after=orientation_error_deg(entry["T_refined"], entry["T_gt"]),
                )
            if "T_gt_wall" in entry and "result_wall" in entry:
                row["latency_ms"] = 1000.0 * (entry["result_wall"] - entry["T_gt_wall"])
            rows.append(row)
        return rows


def frames_in(bag: Path) -> int:
    """Frames of an episode: messages on its colour image topic."""
    topic = load_config("topics")["color_image"]
    with Reader(bag) as reader:
        return sum(c.msgcount for c in reader.connections if c.topic == topic)


def replay_episode(
    bag: Path,
    parameters: dict | None = None,
    start_timeout_s: float = 60.0,
    frame_timeout_s: float = 60.0,
    log=print,
    remaps: dict[str, dict[str, str]] | None = None,
    overlay: bool = False,
) -> ReplayRun:
    """Run the graph on `bag` (node -> parameter overrides in `parameters`, node -> topic
    remappings in `remaps`; overlay: record refiner/overlay images as each frame's `overlay`)."""
    from tactile_pose_refiner.nodes.monitor import GraphMonitor

    topics = load_config("topics")
    inputs = [topics[key] for key in GRAPH_INPUTS]
    parameters = dict(parameters or {})
    # A frame's inputs may come late when DDS repairs a loss (3 s heartbeat).
    for name in ("estimator_node", "refiner_node"):
        parameters[name] = {"input_wait_s": 10.0, **parameters.get(name, {})}
    replay = parameters.pop("bag_replay_node", {})
    parameters["bag_replay_node"] = {
        "wait_for_subscribers_s": float(start_timeout_s),
        "start_delay_s": 2.0,
        "linger_s": 3600.0,  # stopped with the graph
        "wait_topics": ",".join(inputs + list(GRAPH_INTERNAL)),
        **replay,
    }
    nodes = replay_graph(bag, parameters)
    for name, rules in (remaps or {}).items():
        nodes[name].remaps.update(rules)
    expected = frames_in(bag)
    with (
        isolated_ros_environment() as env,
        RunningGraph(env) as graph,
        GraphMonitor(int(env["ROS_DOMAIN_ID"]), overlay) as monitor,
    ):
        player = nodes.pop("bag_replay_node")
        for name, node in nodes.items():
            graph.start(name, node)
        log(f"started {len(nodes)} nodes; waiting until each one runs")
        # A node reports on /diagnostics once its constructor (every subscription) is done:
        # only then may the replay start, or a node that matched late misses the first frames.
        silent = monitor.wait_for_nodes(list(nodes), start_timeout_s)
        missing = monitor.wait_for_subscribers(inputs + list(GRAPH_INTERNAL), start_timeout_s)
        if silent or missing:
            log(f"after {start_timeout_s:.0f} s, not running: {silent}; without a subscriber: {missing}")
        graph.start("bag_replay_node", player)
        _wait_for_refinements(monitor, graph, expected, frame_timeout_s, log)
        time.sleep(0.5)
        run = ReplayRun(expected, monitor.snapshot(), list(monitor.statuses), topics=monitor.topic_types())
        run.exits = graph.stop()
    return run


def _wait_for_refinements(monitor, graph, expected: int, frame_timeout_s: float, log) -> None:
    last_count, last_change = 0, time.monotonic()
    while True:
        count = monitor.refined_count()
        if count != last_count:
            log(f"refined {count}/{expected} frames")
            last_count, last_change = count, time.monotonic()
        if count >= expected or time.monotonic() - last_change > frame_timeout_s:
            return
        dead = [
            name
            for name, p in graph.processes.items()  # the replay alone may end (code 0)
            if p.poll() is not None and (name != "bag_replay_node" or p.returncode != 0)
        ]
        if dead:
            log(f"nodes exited early: {dead}")
            return
        time.sleep(0.1)
