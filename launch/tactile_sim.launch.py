"""Bring-up without the skin: tactile_sim_node publishing the pattern of
config/tactile_sim.yaml on `tactile` (remap with tactile_topic:=...).

    ros2 launch tactile_pose_refiner tactile_sim.launch.py tactile_topic:=/xela/tactile
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("tactile_pose_refiner"))
    tactile_topic = LaunchConfiguration("tactile_topic")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "tactile_topic", default_value="tactile", description="topic the TactileArray pattern is published on"
            ),
            Node(
                package="tactile_pose_refiner",
                executable="tactile_sim_node",
                name="tactile_sim_node",
                output="screen",
                parameters=[str(share / "config" / "tactile_sim.yaml")],
                remappings=[("tactile", tactile_topic)],
            ),
        ]
    )
