"""How a node process ends: Ctrl-C is a clean stop (exit code 0) wherever in rclpy it lands; an
error of the node's own still ends it with a traceback and a non-zero code; a parameter that
cannot work stops it at once (exit code 2) with the reason and no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

TICKER = """
import os, signal, sys, time
from tactile_pose_refiner.nodes.common import GraphNode, run_node

class Ticker(GraphNode):
    def __init__(self):
        super().__init__("exit_test", {})
        self.create_timer(0.05, self.tick)

    def tick(self):
        if sys.argv[1] == "error":
            raise TypeError("a bug of the node's own")
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:  # as pybind11 reports a KeyboardInterrupt inside rclpy's message conversion
            raise TypeError("Unable to convert function return value to a Python type!") from None

sys.exit(run_node(Ticker, ["exit_test"]))
"""


@pytest.mark.parametrize(("case", "code"), [("sigint", 0), ("error", 1)])
def test_sigint_inside_rclpy_exits_cleanly_and_an_error_does_not(ros_env, case, code):
    """SIGINT reaches a node as a KeyboardInterrupt a moment before rclpy shuts its context down;
    inside rclpy's message conversion it surfaces as a TypeError or RuntimeError (seen in 2 of 48
    node stops of a live graph, exit code 1)."""
    done = subprocess.run([sys.executable, "-c", TICKER, case], env=ros_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr[-2000:]
    assert ("a bug of the node's own" in done.stderr) == (case == "error")


@pytest.mark.parametrize(
    ("node", "parameter", "said"),
    [
        ("refiner_node", "mode:=tracking", "mode must be one of refine, track, got 'tracking'"),
        ("refiner_node", "variant:=our", "variant must be a variant of config/refiner.yaml (ours, "),
        ("refiner_node", "camera_off_variant:=touch", "camera_off_variant must be a variant"),
        ("refiner_node", "iterations:=-5", "iterations must be 0 or more, got -5"),
        ("rgbd_node", "slop_s:=-0.1", "queue_size must be 1 or more and slop_s 0 or more, got 10 and -0.1"),
        ("estimator_node", "input_wait_s:=-1.0", "input_wait_s must be 0 or more, got -1.0"),
        ("tactile_node", "joint_tolerance_s:=-0.05", "joint_tolerance_s must be 0 or more, got -0.05"),
    ],
)
def test_a_parameter_that_cannot_work_stops_the_node_with_the_reason(ros_env, node, parameter, said):
    """Before: a mistyped mode refined in refine mode, a mistyped variant failed on every frame,
    a negative slop ended rgbd_node in a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", f"tactile_pose_refiner.nodes.{node}", "--ros-args", "-p", parameter],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and said in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_a_node_that_does_not_stop_says_where_it_hangs():
    """RunningGraph.stop asks a node still running after SIGINT for its threads' stacks before it
    kills it (SIGUSR1, registered by run_node): the hang's place lands in the node's stderr."""
    from tactile_pose_refiner.graph import stacks_dumped

    hanging = "from tactile_pose_refiner.nodes.common import watch_signals\n"
    hanging += "import time\nwatch_signals()\nprint('ready', flush=True)\n"
    hanging += "def stuck_in_shutdown():\n    time.sleep(60)\nstuck_in_shutdown()\n"
    process = subprocess.Popen(
        [sys.executable, "-c", hanging], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    stacks_dumped(process)
    process.kill()
    _, stderr = process.communicate(timeout=30)
    assert "stuck_in_shutdown" in stderr and "Current thread" in stderr, stderr
