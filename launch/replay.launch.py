"""Offline: replay a recorded episode (rosbag2) through the same nodes, with RViz.

    ros2 launch tactile_pose_refiner replay.launch.py bag:=/data/episodes/006_mustard_bottle_000 rate:=0.5

The estimator runs on the replayed images and touch (`estimator:=classical`, the default, or
`learned`); `estimator:=ground_truth_noise` starts from the recorded ground truth moved by the
benchmark's noise model instead (labelled in every RefinementDiagnostics). Inputs are subscribed
reliably so every recorded frame is estimated and refined.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from tactile_pose_refiner.graph import replay_graph
from tactile_pose_refiner.launch_actions import PACKAGE, arguments, graph_actions, visualisation_actions


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    nodes = replay_graph("")  # reliable inputs, every frame queued
    player = nodes.pop("bag_replay_node")
    bag_player = Node(
        package=PACKAGE,
        executable=player.executable,
        name="bag_replay_node",
        output="screen",
        parameters=[str(p) for p in player.params_files]
        + [
            {
                "bag": LaunchConfiguration("bag"),
                "rate": LaunchConfiguration("rate"),
                "loop": LaunchConfiguration("loop"),
                "restamp": LaunchConfiguration("restamp"),
                "wait_for_subscribers_s": 30.0,
                "start_delay_s": 2.0,
            }
        ],
    )
    return LaunchDescription(
        arguments()
        + [
            DeclareLaunchArgument("bag", description="rosbag2 episode directory (tpr generate / import-isaac)"),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
            DeclareLaunchArgument("loop", default_value="false", description="replay in a loop"),
            DeclareLaunchArgument(
                "restamp", default_value="false", description="stamp messages at publication: a live feed (with loop)"
            ),
        ]
        + graph_actions(nodes)
        + [bag_player]
        + visualisation_actions(share)
    )
