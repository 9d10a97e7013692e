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
    "python3-scipy",
    "python3-yaml",
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
    # rosdep's pip keys install with the system pip, which Ubuntu 24.04 refuses (PEP 668)
    assert not [name for name in declared if name.endswith("-pip")]
    assert package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [group.name for group in package.member_of_groups]


def requirement_names(file_name: str) -> dict[str, str]:
    """Requirement file (following -r) -> {distribution name: its specifier}."""
    names = {}
    for line in (REPO / file_name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names.update(requirement_names(line[3:].strip()))
        elif line:
            name = re.split(r"[=<>!~ ]", line, maxsplit=1)[0].lower()
            names[name] = line[len(name) :].strip()
    return names


def test_a_robot_install_takes_no_ros_wheels_and_keeps_the_distributions_numpy():
    """requirements-robot.txt goes beside a robot's own ROS 2: a ROS wheel would mix two
    distributions in one process, numpy 2 would break ROS's compiled message code (Noble: 1.26);
    it pins the same core libraries as the development virtualenv."""
    robot, development = requirement_names("requirements-robot.txt"), requirement_names("requirements.txt")
    assert not [name for name in robot if name.startswith("ros-") or name in ("rclpy", "catkin-pkg")]
    assert robot["numpy"] == "<2"
    assert {"torch", "warp-lang", "trimesh", "open3d", "manifold3d", "deodr", "rosbags"} <= set(robot)
    shared = set(robot) & set(development) - {"numpy", "deodr"}  # the two builds of DEODR, for numpy 1 and 2
    assert {name: robot[name] for name in shared} == {name: development[name] for name in shared}


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
