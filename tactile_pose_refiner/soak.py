"""`tpr soak --minutes N`: the graph left running on a live feed, as on a robot, and measured.

An episode replays in a loop, re-stamped at publication (`restamp`: a camera that never stops),
through the refinement graph with its robot settings (best-effort sensor inputs, the latest
frame only). Every `sample_s` the soak reads each node's resident memory; it counts refined
poses, their latency (camera stamp to arrival of the refined pose) and the /diagnostics reports
by kind. It fails (exit 1) on a stall (no refined pose for `stall_s`), a node that died, or a
node whose memory grew more than `max_rss_growth` after warm-up.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from tactile_pose_refiner.core.resources import config_path, load_config
from tactile_pose_refiner.graph import (
    REFINER_NODES,
    NodeProcess,
    RunningGraph,
    composed_graph,
    isolated_ros_environment,
    refiner_graph,
)
from tactile_pose_refiner.nodes.conversions import stamp_ns
from tactile_pose_refiner.replay import GRAPH_INPUTS

PEAK_WINDOW_S = 30.0  # memory is compared as the peak over this long, after warm-up and at the end


@dataclass
class SoakLimits:
    minutes: float
    warmup_s: float = 60.0  # memory after this (imports, SDF bake, first kernels) is the baseline
    stall_s: float = 60.0  # no refined pose for this long is a stall
    max_rss_growth: float = 0.05  # a node's memory may grow this share after warm-up
    sample_s: float = 5.0


@dataclass
class SoakResult:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    rss_mb: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # node -> (t, MB)
    pss_mb: dict[str, float] = field(default_factory=dict)  # node -> last PSS (shared pages split)
    cpu_s: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # node -> (t, CPU seconds)
    diagnostics: Counter = field(default_factory=Counter)
    stalls: int = 0
    crashed: list[str] = field(default_factory=list)
    first_pose_s: float = float("inf")

    def baseline(self, node: str, warmup_s: float) -> float:
        """Memory after warm-up: the peak over PEAK_WINDOW_S from the first sample after warmup_s
        and after the first refined pose (the first refinement builds the object's refiner), else
        over the last window."""
        samples = self.rss_mb.get(node, [])
        start = next((t for t, _ in samples if t >= max(warmup_s, self.first_pose_s)), samples[-1][0])
        return max(mb for t, mb in samples if start <= t <= start + PEAK_WINDOW_S)

    def end_peak(self, node: str) -> float:
        samples = self.rss_mb.get(node, [])
        return max(mb for t, mb in samples if t >= samples[-1][0] - PEAK_WINDOW_S)

    def cpu_share(self, node: str, warmup_s: float) -> float:
        """The node's CPU time after warm-up per second of the run (1.0: one core busy)."""
        samples = [(t, cpu) for t, cpu in self.cpu_s.get(node, []) if t >= warmup_s] or self.cpu_s.get(node, [])
        if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
            return float("nan")
        return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])

    def growth(self, node: str, warmup_s: float) -> float:
        """Peak against peak: a refinement's working memory comes and goes between samples
        (the refiner 887-953 MB within seconds); a leak raises the peaks."""
        return self.end_peak(node) / self.baseline(node, warmup_s) - 1.0 if self.rss_mb.get(node) else 0.0

    def summary(self, limits: SoakLimits) -> str:
        growth = max((self.growth(n, limits.warmup_s) for n in self.rss_mb), default=0.0)
        p95 = np.percentile(self.latencies_ms, 95) if self.latencies_ms else float("nan")
        return (
            f"soak: {len(self.latencies_ms)} poses in {self.seconds:.0f} s, max RSS growth {100 * growth:.1f} %, "
            f"p95 latency {p95:.0f} ms, stalls {self.stalls}, crashes {len(self.crashed)}"
        )

    def failed(self, limits: SoakLimits) -> bool:
        growth = max((self.growth(n, limits.warmup_s) for n in self.rss_mb), default=0.0)
        return bool(self.stalls or self.crashed or not self.latencies_ms or growth > limits.max_rss_growth)


def soak_graph(
    bag: Path, estimator: str, parameters: dict | None = None, composed: str | None = None, rate: float = 1.0
) -> dict[str, NodeProcess]:
    """The refinement graph with its robot settings (node -> overrides in `parameters`), as
    separate processes or sharing them (`composed`: a graph.COMPOSITIONS name), and a looping,
    re-stamped replay."""
    topics = load_config("topics")
    parameters = dict(parameters or {})
    parameters["estimator_node"] = {"mode": estimator, **parameters.get("estimator_node", {})}
    nodes = composed_graph(parameters, composition=composed) if composed else refiner_graph(parameters)
    nodes["bag_replay_node"] = NodeProcess(
        "bag_replay_node",
        [config_path("nodes")],
        {
            "bag": str(bag),
            "loop": True,
            "restamp": True,
            "rate": float(rate),
            "wait_for_subscribers_s": 120.0,
            "wait_topics": ",".join(topics[key] for key in GRAPH_INPUTS),
            "start_delay_s": 2.0,
        },
    )
    return nodes


def run_soak(
    bag: Path,
    limits: SoakLimits,
    estimator: str = "classical",
    log=print,
    parameters: dict | None = None,
    composed: str | None = None,
    rate: float = 1.0,
) -> SoakResult:
    from tactile_pose_refiner.nodes.monitor import GraphMonitor

    nodes = soak_graph(bag, estimator, parameters, composed, rate)
    result = SoakResult()
    with (
        isolated_ros_environment() as env,
        RunningGraph(env) as graph,
        GraphMonitor(int(env["ROS_DOMAIN_ID"])) as monitor,
    ):
        poses = PoseTimer(monitor)
        player = nodes.pop("bag_replay_node")
        for name, node in nodes.items():
            graph.start(name, node)
        silent = monitor.wait_for_nodes(list(REFINER_NODES), 120.0)
        if silent:
            log(f"not running after 120 s: {silent}")
        graph.start("bag_replay_node", player)
        started = last_pose = time.monotonic()
        log(f"soaking for {limits.minutes:g} min: {bag.name} looped and re-stamped, robot settings")
        while (elapsed := time.monotonic() - started) < 60.0 * limits.minutes:
            time.sleep(limits.sample_s)
            elapsed = time.monotonic() - started
            _sample_memory(graph, result, elapsed)
            count = poses.count()
            if count > len(result.latencies_ms):
                last_pose = time.monotonic()
                result.first_pose_s = min(result.first_pose_s, elapsed)
                result.latencies_ms, result.stamps = poses.latencies_ms(), poses.stamps()
            elif time.monotonic() - last_pose > limits.stall_s:
                result.stalls += 1
                log(f"stall: no refined pose for {limits.stall_s:.0f} s")
                last_pose = time.monotonic()
            result.crashed = [name for name, p in graph.processes.items() if p.poll() is not None]
            if result.crashed:
                log(f"nodes died: {result.crashed}")
                break
            log(f"{elapsed:5.0f} s: {count} poses, RSS {_rss_line(result)}")
        result.seconds = time.monotonic() - started
        result.latencies_ms, result.stamps = poses.latencies_ms(), poses.stamps()
        for name, level, message in list(monitor.statuses):
            if level != 0:
                result.diagnostics[(name.rsplit("/", 1)[-1], _kind(message))] += 1
        graph.stop()
    return result


class PoseTimer:
    """Arrival latency of every refined pose against its camera stamp (the replay stamps with
    the wall clock, so stamp and arrival share a clock)."""

    def __init__(self, monitor) -> None:
        from geometry_msgs.msg import PoseStamped

        from tactile_pose_refiner.nodes.common import input_qos

        self.lock = threading.Lock()
        self.rows: list[tuple[int, float]] = []
        monitor.node.create_subscription(PoseStamped, "/refiner/pose", self._on_pose, input_qos(reliable=True))

    def _on_pose(self, msg) -> None:
        stamp = stamp_ns(msg.header.stamp)
        with self.lock:
            self.rows.append((stamp, (time.time_ns() - stamp) / 1e6))

    def count(self) -> int:
        with self.lock:
            return len(self.rows)

    def latencies_ms(self) -> list[float]:
        with self.lock:
            return [latency for _, latency in self.rows]

    def stamps(self) -> list[int]:
        with self.lock:
            return [stamp for stamp, _ in self.rows]


def _sample_memory(graph: RunningGraph, result: SoakResult, elapsed: float) -> None:
    """Each node's resident memory (RSS, and PSS: library pages shared between the nodes
    counted once overall) and CPU time, its child processes included."""
    for name, process in graph.processes.items():
        try:
            root = psutil.Process(process.pid)
            tree = [root, *root.children(recursive=True)]
            memory = [p.memory_full_info() for p in tree]  # rss and pss in one read of each process's maps
            rss, pss = sum(m.rss for m in memory), sum(getattr(m, "pss", 0) for m in memory)
            cpu = sum(sum(p.cpu_times()[:2]) for p in tree)
        except psutil.Error:
            continue
        result.rss_mb.setdefault(name, []).append((elapsed, rss / 2**20))
        result.pss_mb[name] = pss / 2**20
        result.cpu_s.setdefault(name, []).append((elapsed, cpu))


def _rss_line(result: SoakResult) -> str:
    return ", ".join(f"{name.removesuffix('_node')} {samples[-1][1]:.0f}" for name, samples in result.rss_mb.items())


def report(result: SoakResult, limits: SoakLimits) -> list[str]:
    """Per node: memory after warm-up and at the end, CPU; latency; diagnostics by kind."""
    lines = [f"{'node':<18} {'RSS MB after warm-up':>20} {'at end':>8} {'growth':>8} {'PSS MB':>7} {'CPU %':>6}"]
    total = total_pss = 0.0
    for name in result.rss_mb:
        base = result.baseline(name, limits.warmup_s)
        growth, cpu = result.growth(name, limits.warmup_s), result.cpu_share(name, limits.warmup_s)
        lines.append(
            f"{name:<18} {base:>20.0f} {result.end_peak(name):>8.0f} {100 * growth:>7.1f}% "
            f"{result.pss_mb.get(name, 0.0):>7.0f} {100 * cpu:>6.0f}"
        )
        if name != "bag_replay_node":  # the refinement nodes' processes
            total, total_pss = total + result.end_peak(name), total_pss + result.pss_mb.get(name, 0.0)
    lines.append(f"the five refinement nodes together: {total:.0f} MB (PSS {total_pss:.0f} MB)")
    lines.append(f"RSS: peaks over {PEAK_WINDOW_S:.0f} s; CPU %: one core = 100, after warm-up")
    if result.latencies_ms:
        p = np.percentile(result.latencies_ms, [5, 50, 95])
        lines.append(f"latency camera stamp -> refined pose: p5 {p[0]:.0f}, p50 {p[1]:.0f}, p95 {p[2]:.0f} ms")
        lines.append(f"refined poses: {len(result.latencies_ms)}, stamps advancing: {_advancing(result.stamps)}")
    for (node, kind), count in sorted(result.diagnostics.items()):
        lines.append(f"diagnostics {node}: {kind} x{count}")
    return lines


def _kind(message: str) -> str:
    """A report without its numbers: 'missing input: no RGB-D bundle within 2.0 s' -> its first two parts."""
    return ":".join(message.split(":")[:2]).strip()[:80]


def _advancing(stamps: list[int]) -> bool:
    return all(b > a for a, b in zip(stamps, stamps[1:]))


def restart_after_kill(graph, poses: PoseTimer, name: str, node, timeout_s: float) -> tuple[float, bool]:
    """SIGKILL of the graph's `name`, then `node` started in its place: (seconds from the start
    until a refined pose stamped after the kill came, or until timeout_s; whether one came)."""
    graph.processes[name].send_signal(signal.SIGKILL)
    graph.processes[name].wait()
    killed_at_ns, restarted = time.time_ns(), time.monotonic()
    graph.start(name, node)
    resumed = False
    while not resumed and time.monotonic() < restarted + timeout_s:
        time.sleep(0.05)
        resumed = any(stamp > killed_at_ns for stamp in poses.stamps())
    return time.monotonic() - restarted, resumed
