"""refinement_graph: the five refinement nodes in one process, for a small robot computer.

What ROS 2 composition does for C++ components: rgbd_node, tactile_node, joint_state_node,
estimator_node and refiner_node share one interpreter (torch, Warp and Open3D loaded once)
and one multi-threaded executor; their topics, parameters (each node reads its own section of
the params file) and /diagnostics are those of the separate processes. The heavy work already
runs in the estimator's and the refiner's worker threads.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from tactile_pose_refiner.core.resources import ResourceError
from tactile_pose_refiner.nodes.common import StoppableNode


def node_classes() -> list[type]:
    from tactile_pose_refiner.nodes.estimator_node import EstimatorNode
    from tactile_pose_refiner.nodes.joint_state_node import JointStateNode
    from tactile_pose_refiner.nodes.refiner_node import RefinerNode
    from tactile_pose_refiner.nodes.rgbd_node import RgbdNode
    from tactile_pose_refiner.nodes.tactile_node import TactileNode

    return [JointStateNode, TactileNode, RgbdNode, EstimatorNode, RefinerNode]


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=sys.argv if args is None else args)
    nodes = []
    executor = MultiThreadedExecutor(num_threads=4)
    try:
        for node_class in node_classes():
            nodes.append(node_class())
            executor.add_node(nodes[-1])
        failed = [node for node in nodes if isinstance(node, StoppableNode) and node.done.done()]
        if failed:  # a node that could not start (its own fatal log says why)
            return int(failed[0].done.result())
        executor.spin()
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except ResourceError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        executor.shutdown(timeout_sec=1.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
