"""The package's build files agree with each other and with what a robot user needs."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import distribution

import pytest
from catkin_pkg.package import parse_package

from conftest import REPO

REQUIRED_DEPENDENCIES = {
    "rclpy",
    "std_msgs",
    "geometry_msgs",
    "sensor_msgs",
    "diagnostic_msgs",
    "visualization_msgs",
    "message_filters",
    "tf2_ros_py",  # the rosdep key of Python's `import tf2_ros` (tf2_ros is the C++ package)
    "tf2_msgs",
    "launch_ros",
    "launch_testing",
    "rosidl_default_generators",
    "rosidl_default_runtime",
    "python3-numpy",
    "python3-yaml",
    "python3-torch",
    "python3-trimesh-pip",
}


def test_package_xml_declares_the_real_dependencies():
    package = parse_package(REPO / "package.xml")
    assert package.name == "tactile_pose_refiner"
    declared = {
        dep.name
        for group in (package.buildtool_depends, package.build_depends, package.exec_depends, package.test_depends)
        for dep in group
    }
    assert REQUIRED_DEPENDENCIES <= declared, REQUIRED_DEPENDENCIES - declared
    assert package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [group.name for group in package.member_of_groups]


@pytest.mark.slow
def test_cmake_finds_every_console_script_of_setup_py():
    """CMakeLists.txt turns setup.py's console scripts into `ros2 run` launchers by regex:
    every entry point must have the exact one-per-line form that regex expects."""
    setup_py = (REPO / "setup.py").read_text()
    cmake_form = re.findall(r'^ *"([a-z_]+) = (tactile_pose_refiner[a-z_.]*):([a-z_]+)",', setup_py, re.MULTILINE)
    installed = distribution("tactile_pose_refiner").entry_points.select(group="console_scripts")
    assert sorted(cmake_form) == sorted((e.name, e.module, e.attr) for e in installed)
    assert {"tpr", "tactile_sim_node", "topic_echo"} <= {name for name, _, _ in cmake_form}
    for _, module, function in cmake_form:
        probe = f"import {module} as m; assert callable(m.{function})"
        subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO)


def test_layout_of_a_ros2_package():
    for path in (
        "package.xml",
        "setup.py",
        "CMakeLists.txt",
        "launch",
        "tactile_pose_refiner",
        "msg/TactileArray.msg",
        "msg/RefinementDiagnostics.msg",
        "config",
        "urdf",
        "test",
        "rviz",
        "README.md",
        ".ci/run",
    ):
        assert (REPO / path).exists(), path


def test_the_version_has_one_source():
    """package.xml holds it; setup.py and __version__ read it (no second copy to forget)."""
    import xml.etree.ElementTree as ElementTree

    import tactile_pose_refiner

    version = ElementTree.parse(REPO / "package.xml").findtext("version").strip()
    assert tactile_pose_refiner.__version__ == version
    assert version not in (REPO / "setup.py").read_text() + (REPO / "tactile_pose_refiner" / "__init__.py").read_text()
