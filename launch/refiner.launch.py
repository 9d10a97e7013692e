"""On the robot: driver topics in (realsense-ros, the Allegro driver, the Xela skin),
refinement out. The nodes and their parameter file come from tactile_pose_refiner.graph, the
same description `tpr demo` runs.

    ros2 launch tactile_pose_refiner refiner.launch.py device:=cuda rviz:=true
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory

from launch import LaunchDescription
from tactile_pose_refiner.graph import refiner_graph
from tactile_pose_refiner.launch_actions import arguments, graph_actions, visualisation_actions


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("tactile_pose_refiner"))
    return LaunchDescription(arguments() + graph_actions(refiner_graph()) + visualisation_actions(share))
