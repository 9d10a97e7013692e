"""The launch files, tested statically (ros2 launch is not installable here): each is run
against recording stand-ins of launch / launch_ros, and everything it names must exist:
executables (console scripts or the robot's packages), parameter files, parameters the nodes
declare, and the topics of rviz/refiner.rviz. Where launch_testing exists (a full ROS 2
install) the real launch file is loaded as well."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from importlib.metadata import distribution

import pytest
import yaml

from conftest import REPO

LAUNCH_FILES = ("refiner.launch.py", "replay.launch.py")
ROBOT_EXECUTABLES = {"rviz2"}  # exec_depend in package.xml


class Recorded:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


def _stand_ins(monkeypatch) -> None:
    kinds = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument"],
        "launch.conditions": ["IfCondition"],
        "launch.substitutions": ["LaunchConfiguration"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
    }
    for module_name, classes in kinds.items():
        module = types.ModuleType(module_name)
        for name in classes:
            setattr(module, name, type(name, (Recorded,), {}))
        monkeypatch.setitem(sys.modules, module_name, module)
    monkeypatch.delitem(sys.modules, "tactile_pose_refiner.launch_actions", raising=False)
    monkeypatch.setitem(sys.modules, "ament_index_python", types.ModuleType("ament_index_python"))
    packages = types.ModuleType("ament_index_python.packages")
    packages.get_package_share_directory = lambda name: str(REPO)
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", packages)


def _describe(monkeypatch, file_name: str):
    _stand_ins(monkeypatch)
    spec = importlib.util.spec_from_file_location(file_name.replace(".", "_"), REPO / "launch" / file_name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description().args[0]


@pytest.mark.parametrize("file_name", LAUNCH_FILES)
def test_launch_file_names_only_what_exists(monkeypatch, file_name):
    actions = _describe(monkeypatch, file_name)
    scripts = {e.name for e in distribution("tactile_pose_refiner").entry_points.select(group="console_scripts")}
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    arguments = {a.args[0] for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    ours = [n.kwargs for n in nodes if n.kwargs["package"] == "tactile_pose_refiner"]
    expected = {"rgbd_node", "tactile_node", "joint_state_node", "estimator_node", "refiner_node"}
    if file_name == "replay.launch.py":
        expected.add("bag_replay_node")
    assert {n["executable"] for n in ours} == expected and expected <= scripts
    assert {n.kwargs["executable"] for n in nodes} - expected == ROBOT_EXECUTABLES
    for node in ours:
        files = [p for p in node["parameters"] if isinstance(p, str)]
        assert files and all((REPO / "config" / "nodes.yaml").samefile(f) for f in files)
        section = yaml.safe_load(open(files[0]))[node["executable"]]["ros__parameters"]
        declared = importlib.import_module(f"tactile_pose_refiner.nodes.{node['executable']}").PARAMETERS
        overrides = [p for p in node["parameters"] if isinstance(p, dict)]
        assert set(section) == set(declared) and all(set(o) <= set(declared) for o in overrides)
        for value in (v for o in overrides for v in o.values()):
            if type(value).__name__ == "LaunchConfiguration":
                assert value.args[0] in arguments  # every substitution is a declared argument
    rviz = next(n for n in nodes if n.kwargs["executable"] == "rviz2")
    assert (REPO / "rviz" / "refiner.rviz").samefile(rviz.kwargs["arguments"][1])


def test_launch_file_loads_with_real_launch_where_installed():
    pytest.importorskip("launch_testing", reason="launch_testing needs a full ROS 2 install")
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    for file_name in LAUNCH_FILES:
        description = PythonLaunchDescriptionSource(str(REPO / "launch" / file_name)).get_launch_description(None)
        assert description.entities
