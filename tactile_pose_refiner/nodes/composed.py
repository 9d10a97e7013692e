"""refinement_graph: several refinement nodes in one process, for a small robot computer.

What ROS 2 composition does for C++ components: the nodes named by `--nodes` (default: all five,
rgbd_node, tactile_node, joint_state_node, estimator_node and refiner_node) share one interpreter
(torch, Warp and Open3D loaded once) and one executor; their topics, parameters
(each node reads its own section of the params file) and /diagnostics are those of the separate
processes. One interpreter runs on one core at a time (the GIL): graph.COMPOSITIONS says which
groupings keep the refiner's rate.

    refinement_graph --nodes joint_state_node,tactile_node,rgbd_node --ros-args --params-file nodes.yaml
"""

from __future__ import annotations

import argparse
import sys

import rclpy
from rclpy.executors import SingleThreadedExecutor

from tactile_pose_refiner.nodes.common import StoppableNode, exit_code_for, watch_signals

NODE_CLASSES = {  # module nodes/<name>.py; only the named ones are imported (sensor nodes need no torch)
    "joint_state_node": "JointStateNode",
    "tactile_node": "TactileNode",
    "rgbd_node": "RgbdNode",
    "estimator_node": "EstimatorNode",
    "refiner_node": "RefinerNode",
}


def node_classes(names: list[str]) -> list[type]:
    import importlib

    unknown = [name for name in names if name not in NODE_CLASSES]
    if unknown:
        raise SystemExit(f"refinement_graph: unknown nodes {unknown}; known: {', '.join(NODE_CLASSES)}")
    modules = [importlib.import_module(f"tactile_pose_refiner.nodes.{name}") for name in names]
    return [getattr(module, NODE_CLASSES[name]) for module, name in zip(modules, names)]


def parse_node_names(args: list[str]) -> list[str]:
    """The --nodes list among the non-ROS arguments (all five when absent)."""
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog="refinement_graph")
    parser.add_argument("--nodes", default=",".join(NODE_CLASSES), help="comma-separated node names")
    return [name for name in parser.parse_args(remove_ros_args(args)[1:]).nodes.split(",") if name]


def main(args: list[str] | None = None) -> int:
    args = sys.argv if args is None else args
    classes = node_classes(parse_node_names(args))
    watch_signals()
    rclpy.init(args=args)
    nodes = []
    executor = SingleThreadedExecutor()  # as each node alone (rclpy.spin): the heavy work runs in worker threads
    try:
        for node_class in classes:
            nodes.append(node_class())
            executor.add_node(nodes[-1])
        failed = [node for node in nodes if isinstance(node, StoppableNode) and node.done.done()]
        if failed:  # a node that could not start (its own fatal log says why)
            return int(failed[0].done.result())
        executor.spin()
        return 0
    except BaseException as exc:
        code = exit_code_for(exc)
        if code is None:
            raise
        return code
    finally:
        executor.shutdown(timeout_sec=1.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
