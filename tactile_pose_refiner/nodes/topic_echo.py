"""topic_echo: prints messages of one topic as JSON lines (ros2cli is not installable here).

Parameters select topic, type, how many messages and a timeout; the process exits 0 after
`count` messages, 3 when `timeout_s` passes first. One JSON object per line on stdout:
{"topic": ..., "type": ..., "received_ns": ..., "message": {...}}.
"""

from __future__ import annotations

import json
import sys
import time

from rclpy.qos import QoSProfile, ReliabilityPolicy

from tactile_pose_refiner.nodes.common import StoppableNode, declare_parameters, run_node
from tactile_pose_refiner.nodes.conversions import message_class, message_to_dict

PARAMETERS = {
    "topic": ("tactile", "topic to echo (relative names resolve in the node's namespace)"),
    "message_type": ("tactile_pose_refiner/msg/TactileArray", "type as package/msg/Name"),
    "count": (0, "exit after this many messages; 0 runs until shut down"),
    "timeout_s": (0.0, "exit with code 3 when fewer than count messages arrived by then; 0: never"),
    "best_effort": (True, "best-effort subscription: matches both sensor and reliable publishers"),
    "depth": (10, "queue depth"),
}
EXIT_TIMEOUT = 3


class TopicEcho(StoppableNode):
    def __init__(self) -> None:
        super().__init__("topic_echo")
        self.params = declare_parameters(self, PARAMETERS)
        self.received = 0
        try:
            msg_type = message_class(self.params["message_type"])
        except ValueError as exc:
            self.get_logger().fatal(str(exc))
            self.finish(2)
            return
        reliability = ReliabilityPolicy.BEST_EFFORT if self.params["best_effort"] else ReliabilityPolicy.RELIABLE
        qos = QoSProfile(depth=self.params["depth"], reliability=reliability)
        self.subscription = self.create_subscription(msg_type, self.params["topic"], self.on_message, qos)
        if self.params["timeout_s"] > 0:
            self.deadline = self.create_timer(self.params["timeout_s"], self.on_timeout)
        self.get_logger().info(f"echoing {self.subscription.topic_name}")

    def on_message(self, msg) -> None:
        record = {
            "topic": self.subscription.topic_name,
            "type": self.params["message_type"],
            "received_ns": time.time_ns(),
            "message": message_to_dict(msg),
        }
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        self.received += 1
        if 0 < self.params["count"] <= self.received:
            self.finish(0)

    def on_timeout(self) -> None:
        if self.params["count"] > 0:
            self.get_logger().error(
                f"timeout: {self.received} of {self.params['count']} messages after {self.params['timeout_s']} s"
            )
            self.finish(EXIT_TIMEOUT)


def main(args: list[str] | None = None) -> int:
    return run_node(TopicEcho, args)


if __name__ == "__main__":
    raise SystemExit(main())
