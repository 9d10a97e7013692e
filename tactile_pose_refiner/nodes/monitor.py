"""An in-process observer of the refinement graph (used by `tpr demo` and the graph tests).

It records, by frame stamp, the ground truth (and when it arrived), the initial and refined
poses and RefinementDiagnostics, plus every /diagnostics status; it can publish test input
and wait until the graph's topics have subscribers. Runs its own rclpy context and executor
thread, so the caller's code stays plain Python.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from sensor_msgs.msg import Image

from tactile_pose_refiner.core.geometry import pose_fields_to_matrix
from tactile_pose_refiner.msg import RefinementDiagnostics
from tactile_pose_refiner.nodes.common import OUTPUT_QOS, default_topic, input_qos, stamp_ns


class GraphMonitor:
    def __init__(self, domain_id: int, overlay: bool = False) -> None:
        """overlay: also subscribe refiner/overlay (the refiner draws it only while watched)."""
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("tpr_graph_monitor", context=self.context)
        self.lock = threading.Lock()
        self.frames: dict[int, dict] = defaultdict(dict)
        self.statuses: list[tuple[str, int, str]] = []  # (node name, level, message)
        every = input_qos(reliable=True)  # the graph's publishers are reliable, transient local
        self._record(PoseStamped, default_topic("ground_truth_pose"), "T_gt", every, pose=True)
        self._record(PoseStamped, "/estimator/initial_pose", "T_initial", every, pose=True)
        self._record(PoseStamped, "/refiner/pose", "T_refined", every, pose=True)
        self._record(RefinementDiagnostics, "/refiner/diagnostics", "result", every)
        if overlay:
            self._record(Image, "/refiner/overlay", "overlay", every)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 100)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except (ExternalShutdownException, RuntimeError):
            pass  # closed while waiting

    def _record(self, msg_type, topic: str, key: str, qos, pose: bool = False) -> None:
        def on_message(msg) -> None:
            with self.lock:
                entry = self.frames[stamp_ns(msg.header.stamp)]
                entry[key] = pose_fields_to_matrix(msg.pose) if pose else msg
                entry[f"{key}_wall"] = time.monotonic()

        self.node.create_subscription(msg_type, topic, on_message, qos)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.statuses += [
                (s.name, s.level[0] if isinstance(s.level, bytes) else int(s.level), s.message) for s in msg.status
            ]

    # --- queries --------------------------------------------------------------------------------
    def snapshot(self) -> dict[int, dict]:
        with self.lock:
            return {stamp: dict(entry) for stamp, entry in self.frames.items()}

    def refined_count(self) -> int:
        with self.lock:
            return sum("result" in entry for entry in self.frames.values())

    def topic_types(self) -> dict[str, list[str]]:
        """Every topic in the graph now -> its message types ('pkg/msg/Type')."""
        return dict(self.node.get_topic_names_and_types())

    def messages_of(self, node_name: str) -> list[str]:
        with self.lock:
            return [message for name, _, message in self.statuses if name.endswith(f"/{node_name}")]

    def wait_for_subscribers(self, topics: list[str], timeout_s: float) -> list[str]:
        """Wait until each topic has a subscriber in the graph; returns those still without."""
        return _wait_while_missing(lambda: [t for t in topics if self.node.count_subscribers(t) == 0], timeout_s)

    def wait_for_nodes(self, node_names: list[str], timeout_s: float) -> list[str]:
        """Wait until each node has published a /diagnostics status; returns those still silent."""

        def silent() -> list[str]:
            with self.lock:
                heard = {name.rsplit("/", 1)[-1] for name, _, _ in self.statuses}
            return [name for name in node_names if name not in heard]

        return _wait_while_missing(silent, timeout_s)

    def publisher(self, msg_type, topic: str):
        """A publisher like the graph's (reliable, transient local: matches any subscriber)."""
        return self.node.create_publisher(msg_type, topic, OUTPUT_QOS)

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=2.0)

    def __enter__(self) -> GraphMonitor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _wait_while_missing(missing, timeout_s: float) -> list:
    """Poll missing() until it is empty or timeout_s passed; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while (left := missing()) and time.monotonic() <= deadline:
        time.sleep(0.2)
    return left
