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
