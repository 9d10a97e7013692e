"""launch_ros actions of the node graph, for launch/*.launch.py (imported only by ros2 launch,
so only where launch and launch_ros exist). The graph itself is tactile_pose_refiner.graph's,
the one `tpr demo` runs without launch."""

from __future__ import annotations

from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition, LaunchConfigurationEquals
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from tactile_pose_refiner.graph import COMPOSITIONS, REFINER_NODES, composed_graph, dds_profile_environment

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
        DeclareLaunchArgument(
            "composed",
            default_value="none",
            description="refinement nodes in shared processes, as composition does: none (one each), "
            + ", ".join(COMPOSITIONS)
            + " (all: one process, ~1 GB instead of ~2 GB; docs/nodes.md)",
        ),
    ]


# launch argument -> (node, parameter) it sets
ARGUMENT_PARAMETERS = {
    "device": ("refiner_node", "device"),
    "variant": ("refiner_node", "variant"),
    "mode": ("refiner_node", "mode"),
    "estimator": ("estimator_node", "mode"),
}


def graph_actions(nodes: dict) -> list:
    """One launch_ros Node per NodeProcess (the refinement nodes only with composed:=none), the
    launch arguments as their parameters; with composed:=NAME the refinement nodes share the
    processes of graph.COMPOSITIONS[NAME] instead (composed_processes)."""
    actions = []
    for name, node in nodes.items():
        overrides = dict(node.parameters)
        for argument, (owner, parameter) in ARGUMENT_PARAMETERS.items():
            if owner == name:
                overrides[parameter] = LaunchConfiguration(argument)
        separate = LaunchConfigurationEquals("composed", "none") if name in REFINER_NODES else None
        actions.append(_node(node, [str(p) for p in node.params_files] + [overrides], name, separate))
    return actions + [OpaqueFunction(function=composed_processes, args=[nodes])]


def composed_processes(context, nodes: dict) -> list:
    """With composed:=NAME, the refinement nodes of `nodes` in graph.COMPOSITIONS[NAME]'s
    processes: their parameters and the launch arguments go into a params file of node sections
    (a -p override would reach every node of a process); nothing with composed:=none."""
    values = context.launch_configurations
    composition = values.get("composed", "none")
    if composition == "none":
        return []
    parameters = {name: dict(node.parameters) for name, node in nodes.items() if name in REFINER_NODES}
    for argument, (owner, parameter) in ARGUMENT_PARAMETERS.items():
        if argument in values:
            parameters[owner][parameter] = values[argument]
    params_file = nodes["refiner_node"].params_files[0]
    remaps = {source: target for name in REFINER_NODES for source, target in nodes[name].remaps.items()}
    actions = []
    for process in composed_graph(parameters, params_file, composition).values():
        process.remaps = remaps
        single = process.executable in REFINER_NODES  # a process of one node keeps its name
        actions.append(_node(process, [str(p) for p in process.params_files], process.executable if single else None))
    return actions


def _node(process, parameters: list, name: str | None, condition=None) -> Node:
    return Node(
        package=PACKAGE,
        executable=process.executable,
        output="screen",
        parameters=parameters,
        remappings=list(process.remaps.items()),
        arguments=list(process.arguments),
        additional_env=dds_profile_environment(),
        **({"name": name} if name else {}),
        **({"condition": condition} if condition else {}),
    )


def visualisation_actions(share: Path) -> list:
    """RViz. joint_state_node publishes the hand's TF tree and robot_description itself (a
    robot_state_publisher beside it would give every link a second parent)."""
    show = IfCondition(LaunchConfiguration("rviz"))
    return [
        Node(
            package="rviz2", executable="rviz2", arguments=["-d", str(share / "rviz" / "refiner.rviz")], condition=show
        ),
    ]
