"""How long the graph takes to publish refined poses again after a node is killed (SIGKILL) and
started again, on a live feed.

    .venv/bin/python tools/measure_restart.py [KILLS] [RATE] [NODE] [MODE]

The 3-frame tomato soup can of the tests looped live (RATE 1.0: 30 Hz), ground_truth_noise
starts; refiner_node in MODE refine (30 iterations) or track. NODE (refiner_node) is killed
KILLS times, 5 s apart, and each time the seconds until a pose stamped after the kill are
printed, with each node's CPU share 3 s later.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

from tactile_pose_refiner.graph import REFINER_NODES, RunningGraph, isolated_ros_environment
from tactile_pose_refiner.io.episode_bag import write_episode
from tactile_pose_refiner.nodes.monitor import GraphMonitor
from tactile_pose_refiner.soak import PoseTimer, restart_after_kill, soak_graph

import scenes


def cpu_shares(graph, seconds: float = 3.0) -> dict[str, float]:
    processes = {name: psutil.Process(process.pid) for name, process in graph.processes.items()}
    for process in processes.values():
        process.cpu_percent(None)
    time.sleep(seconds)
    return {name: process.cpu_percent(None) for name, process in processes.items()}


def main(kills: int = 3, rate: float = 1.0, name: str = "refiner_node", mode: str = "refine") -> None:
    tmp = Path(tempfile.mkdtemp(prefix="restart_"))
    object_id = "005_tomato_soup_can"
    _, frames = scenes.generator().replay(object_id, scenes.stored_grasp(object_id), steps=3, seed=4)
    write_episode(tmp / "live", list(frames))
    nodes = soak_graph(
        tmp / "live", "ground_truth_noise", {"refiner_node": {"iterations": 30, "mode": mode}}, rate=rate
    )
    times = []
    with isolated_ros_environment(tmp / "log") as env, RunningGraph(env) as graph:
        with GraphMonitor(int(env["ROS_DOMAIN_ID"])) as monitor:
            poses = PoseTimer(monitor)
            player = nodes.pop("bag_replay_node")
            for name, node in nodes.items():
                graph.start(name, node)
            assert not monitor.wait_for_nodes(list(REFINER_NODES), 120)
            graph.start("bag_replay_node", player)
            started = time.monotonic()
            while poses.count() == 0 and time.monotonic() < started + 120:
                time.sleep(0.1)
            print(f"first pose after {time.monotonic() - started:.1f} s", flush=True)
            for kill in range(kills):
                time.sleep(5)
                times.append(restart_after_kill(graph, poses, name, nodes[name], 60.0)[0])
                print(f"restart {kill}: resumed {times[-1]:.1f} s; cpu % {cpu_shares(graph)}", flush=True)
            results = graph.stop()
    print("restart s:", " / ".join(f"{t:.1f}" for t in times), "exit codes:", {n: r[0] for n, r in results.items()})
    print("logs:", tmp / "log")


if __name__ == "__main__":
    kinds = (int, float, str, str)
    main(*(kind(arg) for kind, arg in zip(kinds, sys.argv[1:])))
