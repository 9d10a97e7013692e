"""pip/virtualenv install of tactile_pose_refiner (development and `tools/setup.sh`).

On a robot, colcon builds the package with CMakeLists.txt (ament_cmake: messages, Python
modules, node launchers, share files); CMakeLists.txt reads the console scripts below, so
keep one per line in the form "name = module:function",.
"""

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from setuptools import find_packages, setup

# package.xml holds the version (ROS needs it there); pip and __version__ read it from there.
VERSION = ElementTree.parse(Path(__file__).with_name("package.xml")).findtext("version").strip()

setup(
    name="tactile_pose_refiner",
    version=VERSION,
    description="Multi-modal (physics, rendering, depth, touch) 6D pose refinement for in-hand objects",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["tactile_pose_refiner", "tactile_pose_refiner.*"]),
    install_requires=["numpy", "pyyaml"],  # the full pinned set is requirements.txt
    entry_points={
        "console_scripts": [
            "tpr = tactile_pose_refiner.cli:main",
            "tactile_sim_node = tactile_pose_refiner.nodes.tactile_sim_node:main",
            "topic_echo = tactile_pose_refiner.nodes.topic_echo:main",
            "bag_replay_node = tactile_pose_refiner.nodes.bag_replay_node:main",
            "rgbd_node = tactile_pose_refiner.nodes.rgbd_node:main",
            "tactile_node = tactile_pose_refiner.nodes.tactile_node:main",
            "joint_state_node = tactile_pose_refiner.nodes.joint_state_node:main",
            "estimator_node = tactile_pose_refiner.nodes.estimator_node:main",
            "refiner_node = tactile_pose_refiner.nodes.refiner_node:main",
            "refinement_graph = tactile_pose_refiner.nodes.composed:main",
        ],
    },
)
