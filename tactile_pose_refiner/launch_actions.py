"""launch_ros actions of the node graph, for launch/*.launch.py (imported only by ros2 launch,
so only where launch and launch_ros exist). The graph itself is tactile_pose_refiner.graph's,
the one `tpr demo` runs without launch."""

from __future__ import annotations

from pathlib import Path

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from tactile_pose_refiner.graph import dds_profile_environment

PACKAGE = "tactile_pose_refiner"


def arguments() -> list:
    return [
        DeclareLaunchArgument("device", default_value="cpu", description="cpu, cuda or auto"),
        DeclareLaunchArgument("variant", default_value="ours", description="refiner variant (config/refiner.yaml)"),
        DeclareLaunchArgument(
            "mode",
            default_value="refine",
            description="refiner_node mode: refine (each estimate) or track (every frame)",
        ),
        DeclareLaunchArgument(
            "estimator",
            default_value="classical",
            description="estimator_node mode: classical, learned, ground_truth_noise (replay only), none",
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with rviz/refiner.rviz"),
    ]


def graph_actions(nodes: dict) -> list:
    """One launch_ros Node per NodeProcess; the refiner's device, variant and mode and the
    estimator's mode from arguments."""
    actions = []
    for name, node in nodes.items():
        overrides = dict(node.parameters)
        if name == "refiner_node":
            overrides.update(
                device=LaunchConfiguration("device"),
                variant=LaunchConfiguration("variant"),
                mode=LaunchConfiguration("mode"),
            )
        if name == "estimator_node":
            overrides.update(mode=LaunchConfiguration("estimator"))
        actions.append(
            Node(
                package=PACKAGE,
                executable=node.executable,
                name=name,
                output="screen",
                parameters=[str(p) for p in node.params_files] + [overrides],
                remappings=list(node.remaps.items()),
                additional_env=dds_profile_environment(),
            )
        )
    return actions


def visualisation_actions(share: Path) -> list:
    """RViz. joint_state_node publishes the hand's TF tree and robot_description itself (a
    robot_state_publisher beside it would give every link a second parent)."""
    show = IfCondition(LaunchConfiguration("rviz"))
    return [
        Node(
            package="rviz2", executable="rviz2", arguments=["-d", str(share / "rviz" / "refiner.rviz")], condition=show
        ),
    ]
