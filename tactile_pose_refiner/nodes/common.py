"""Shared plumbing of the nodes: parameter declaration and the spin/shutdown lifecycle."""
from __future__ import annotations

import sys
from typing import Any, Callable, Mapping

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future

# name -> (default, description); the defaults match the node's section in config/*.yaml
# (test_config_matches_node_parameters checks that).
ParameterSpec = Mapping[str, tuple[Any, str]]


def declare_parameters(node: Node, spec: ParameterSpec) -> dict[str, Any]:
    """Declare every parameter of `spec` with its description; return the current values."""
    for name, (default, description) in spec.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description))
    return {name: node.get_parameter(name).value for name in spec}


class StoppableNode(Node):
    """A node that may finish by itself: it sets `done` with an exit code."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.done = Future()

    def finish(self, exit_code: int) -> None:
        if not self.done.done():
            self.done.set_result(exit_code)


def run_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Init rclpy, spin the node until Ctrl-C / shutdown (or until it finishes), clean up.

    Returns the process exit code. `args` defaults to sys.argv so `--ros-args` apply.
    """
    rclpy.init(args=sys.argv if args is None else args)
    node = None
    try:
        node = make_node()
        if isinstance(node, StoppableNode):
            rclpy.spin_until_future_complete(node, node.done)
            return int(node.done.result()) if node.done.done() else 0
        rclpy.spin(node)
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
