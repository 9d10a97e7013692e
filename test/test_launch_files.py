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
COMPOSED_NODES = ("joint_state_node", "tactile_node", "rgbd_node", "estimator_node", "refiner_node")


class Recorded:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


def _stand_ins(monkeypatch) -> None:
    kinds = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction"],
        "launch.conditions": ["IfCondition", "LaunchConfigurationEquals"],
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


@pytest.mark.parametrize("file_name", LAUNCH_FILES)
def test_composed_launch_starts_the_refinement_nodes_in_shared_processes(monkeypatch, file_name):
    """composed:=all: one refinement_graph process with all five nodes, the launch arguments in
    its params file under each node's own section; composed:=two: two processes; the separate
    nodes are then off (their condition), the replay (bag_replay_node) stays a process of its own."""
    actions = _describe(monkeypatch, file_name)
    nodes_ = [a for a in actions if type(a).__name__ == "Node" and a.kwargs["package"] == "tactile_pose_refiner"]
    separate = [n for n in nodes_ if type(n.kwargs.get("condition")).__name__ == "LaunchConfigurationEquals"]
    assert {n.kwargs["executable"] for n in separate} == set(COMPOSED_NODES)
    assert all(n.kwargs["condition"].args == ("composed", "none") for n in separate)
    assert all("condition" not in n.kwargs for n in nodes_ if n not in separate)  # the replay
    composed = next(a for a in actions if type(a).__name__ == "OpaqueFunction")
    arguments = {"device": "cuda", "variant": "ours", "mode": "track", "estimator": "classical"}
    function, nodes = composed.kwargs["function"], composed.kwargs["args"][0]
    assert function(types.SimpleNamespace(launch_configurations={**arguments, "composed": "none"}), nodes) == []
    for composition, processes in (("all", 1), ("two", 2)):
        context = types.SimpleNamespace(launch_configurations={**arguments, "composed": composition})
        started = [n.kwargs for n in function(context, nodes)]
        assert len(started) == processes and {n["executable"] for n in started} == {"refinement_graph"}
        named = [name for n in started for name in n["arguments"][1].split(",")]
        assert sorted(named) == sorted(COMPOSED_NODES) and all("name" not in n for n in started)
        sections = {}
        for path in started[0]["parameters"]:
            for node, values in yaml.safe_load(open(path)).items():
                sections.setdefault(node, {}).update(values["ros__parameters"])
        assert sections["refiner_node"]["mode"] == "track" and sections["refiner_node"]["device"] == "cuda"
        if composition == "all":
            assert sections["estimator_node"]["mode"] == "classical"
        if file_name == "replay.launch.py":  # the replay's own settings reach the composed nodes
            assert sections["refiner_node"]["reliable_inputs"] is True


def test_launch_file_loads_with_real_launch_where_installed():
    pytest.importorskip("launch_testing", reason="launch_testing needs a full ROS 2 install")
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    for file_name in LAUNCH_FILES:
        description = PythonLaunchDescriptionSource(str(REPO / "launch" / file_name)).get_launch_description(None)
        assert description.entities
