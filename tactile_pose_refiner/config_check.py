"""`tpr config --check [DIR]`: a config folder checked against every definition before a run.

Package config files are checked against core/config_schema.py; ROS 2 params files (a section
per node) against the parameters the nodes declare (each node's PARAMETERS: the same names,
defaults and descriptions `ros2 param describe` shows), with ROS's own type rule (an int is
not a double).
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from tactile_pose_refiner.core.config_schema import ROS_PARAMS_FILES, SCHEMAS, ConfigError, validate
from tactile_pose_refiner.core.resources import ResourceError, load_yaml

# parameters every rclpy node accepts without declaring them
BUILTIN_PARAMETERS = {"use_sim_time", "start_type_description_service"}
NODES = (
    "bag_replay_node",
    "rgbd_node",
    "tactile_node",
    "joint_state_node",
    "estimator_node",
    "refiner_node",
    "tactile_sim_node",
    "topic_echo",
)  # each is the module tactile_pose_refiner.nodes.<name>


def node_parameters(node_name: str) -> dict:
    """name -> (default, description) that node declares."""
    module = importlib.import_module(f"tactile_pose_refiner.nodes.{node_name}")
    return module.PARAMETERS


def check_ros_params(content: dict, path: str) -> list[str]:
    """Problems of a ROS 2 params file: unknown nodes, unknown parameters, wrong types."""
    problems = []
    for node_name, section in content.items():
        if node_name not in NODES:
            near = difflib.get_close_matches(node_name, list(NODES), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            problems.append(f"{path}: unknown node '{node_name}'{hint} (nodes: {', '.join(NODES)})")
            continue
        values = (section or {}).get("ros__parameters") if isinstance(section, dict) else None
        if not isinstance(values, dict):
            problems.append(f"{path}: '{node_name}' needs a 'ros__parameters:' mapping")
            continue
        problems += parameter_problems(node_name, values, path)
    return problems


def parameter_problems(node_name: str, values: dict, path: str) -> list[str]:
    declared = node_parameters(node_name)
    problems = []
    for name, value in values.items():
        if name in BUILTIN_PARAMETERS:
            continue
        if name not in declared:
            near = difflib.get_close_matches(name, list(declared), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            problems.append(f"{path}: {node_name} has no parameter '{name}'{hint} (accepted: {', '.join(declared)})")
        elif not same_ros_type(value, declared[name][0]):
            problems.append(
                f"{path}: {node_name}.{name} must be {type(declared[name][0]).__name__} "
                f"like its default {declared[name][0]!r}, got {value!r}"
            )
    return problems


def same_ros_type(value, default) -> bool:
    if isinstance(default, list):
        return isinstance(value, list) and (not value or not default or all(type(v) is type(default[0]) for v in value))
    return type(value) is type(default)


def check_config_dir(folder: Path) -> tuple[list[str], list[str]]:
    """(files checked, problems) of every known config file in `folder`."""
    checked, problems = [], []
    for path in sorted(folder.glob("*.yaml")):
        name = path.stem
        if name not in SCHEMAS and name not in ROS_PARAMS_FILES:
            continue
        checked.append(path.name)
        try:
            content = load_yaml(path)
            if name in ROS_PARAMS_FILES:
                problems += check_ros_params(content, str(path))
            else:
                validate(name, content, str(path))
        except (ResourceError, ConfigError) as exc:
            problems.append(str(exc))
    return checked, problems


def main(folder: str | None) -> int:
    from tactile_pose_refiner.core.resources import share_dir

    target = Path(folder) if folder else share_dir() / "config"
    if not target.is_dir():
        print(f"tpr config: no such folder: {target}")
        return 2
    checked, problems = check_config_dir(target)
    for problem in problems:
        print(problem)
    print(f"tpr config: {len(checked)} files checked in {target}, {len(problems)} problems")
    return 1 if problems or not checked else 0
