"""The silence watchdog of every graph node (GraphNode `silence_s`): inputs arriving while
nothing is published for silence_s is one warning on /diagnostics that says why; a node with
no inputs is quiet without a warning, and output ends the silence."""

from __future__ import annotations

import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from tactile_pose_refiner.nodes.common import GraphNode


class Relay(GraphNode):
    """relay_in -> relay_out while `forwarding`; silent otherwise."""

    def __init__(self) -> None:
        super().__init__("relay_test", {"silence_s": (0.5, "watchdog after this long [s]")})
        self.forwarding = False
        self.out = self.create_publisher(String, "relay_out", 10)
        self.create_subscription(String, "relay_in", self.on_input, 10)

    def on_input(self, msg: String) -> None:
        if self.forwarding:
            self.out.publish(msg)


def spin_while_sending(executor, publisher, seconds: float, send: bool = True) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if send:
            publisher.publish(String(data="frame"))
        executor.spin_once(timeout_sec=0.05)


def test_inputs_without_output_are_reported_once_with_a_reason_and_output_ends_it(ros_env):
    rclpy.init(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        relay, sender = Relay(), rclpy.create_node("relay_sender")
        executor = SingleThreadedExecutor()
        executor.add_node(relay)
        executor.add_node(sender)
        publisher = sender.create_publisher(String, "relay_in", 10)

        spin_while_sending(executor, publisher, 1.5, send=False)
        assert relay.diagnostics.problems["no output"] == 0  # no inputs: nothing is expected

        spin_while_sending(executor, publisher, 2.5)
        level, message, _ = relay.diagnostics.last
        assert relay.diagnostics.problems["no output"] == 1, relay.diagnostics.problems
        assert level == "warn" and "while inputs arrive" in message and "no input set completed" in message

        relay.forwarding = True
        spin_while_sending(executor, publisher, 1.0)
        relay.forwarding = False
        spin_while_sending(executor, publisher, 2.0)  # a second silence is reported again
        assert relay.diagnostics.problems["no output"] == 2
        executor.shutdown()
        relay.destroy_node()
        sender.destroy_node()
    finally:
        rclpy.shutdown()


def test_a_problem_repeated_at_camera_rate_is_counted_and_published_once_a_period(ros_env):
    """30 identical drops a second: every one counted, /diagnostics carries the first at once and
    then the periodic repeat (with the count), not 30 messages; a new problem goes out at once."""
    from diagnostic_msgs.msg import DiagnosticArray

    rclpy.init(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        relay, listener = Relay(), rclpy.create_node("diagnostics_listener")
        received: list[DiagnosticArray] = []
        listener.create_subscription(DiagnosticArray, "/diagnostics", received.append, 100)
        executor = SingleThreadedExecutor()
        executor.add_node(relay)
        executor.add_node(listener)
        deadline = time.monotonic() + 5.0
        while not relay.count_subscribers("/diagnostics") and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        received.clear()
        start = time.monotonic()
        while time.monotonic() < start + 2.0:
            relay.diagnostics.report("warn", "skipped frame: the node is busy (queue full)")
            executor.spin_once(timeout_sec=1 / 30)
        relay.diagnostics.report("error", "stale input: initial pose is 9.00 s off the clock")
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        messages = [array.status[0].message for array in received if array.status]
        skipped = [m for m in messages if m.startswith("skipped frame")]
        assert relay.diagnostics.problems["skipped frame"] > 40
        assert 1 <= len(skipped) <= 4, messages  # the first, then about one a second (was one per report)
        assert messages[-1].startswith("stale input")
        counts = {kv.key: kv.value for kv in received[-1].status[0].values}
        assert int(counts["count skipped frame"]) == relay.diagnostics.problems["skipped frame"]
        executor.shutdown()
        relay.destroy_node()
        listener.destroy_node()
    finally:
        rclpy.shutdown()
