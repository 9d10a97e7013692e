"""Where the package's data lives: config/ YAML, urdf/, data/.

In a source checkout (editable install) these are the folders beside the Python package;
in a colcon install they are in share/tactile_pose_refiner. TPR_SHARE_DIR overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

PACKAGE_NAME = "tactile_pose_refiner"


class ResourceError(RuntimeError):
    """A config/data file is missing or unreadable; the message names the file."""


def share_dir() -> Path:
    """Directory holding config/, urdf/, launch/, rviz/ (and data/ when shipped)."""
    override = os.environ.get("TPR_SHARE_DIR")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "config").is_dir() and (checkout / "package.xml").is_file():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError as exc:
        raise ResourceError(
            f"cannot find the {PACKAGE_NAME} share directory: not a source checkout "
            "and ament_index_python is not importable; set TPR_SHARE_DIR"
        ) from exc
    return Path(get_package_share_directory(PACKAGE_NAME))


def config_path(name: str) -> Path:
    """Path of a file in config/ (name with or without the .yaml suffix)."""
    filename = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    return share_dir() / "config" / filename


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; a clear ResourceError naming the file on any problem."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as stream:
            content = yaml.safe_load(stream)
    except FileNotFoundError as exc:
        raise ResourceError(f"config file not found: {path}") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ResourceError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(content, dict):
        raise ResourceError(f"config file {path} must hold a mapping, got {type(content).__name__}")
    return content


def load_config(name: str) -> dict[str, Any]:
    """Load config/<name>.yaml as a dict, checked against its definition (core/config_schema.py):
    an unknown key or a wrong type is a ResourceError naming the file, the key and the fix."""
    from tactile_pose_refiner.core.config_schema import ConfigError, validate

    path = config_path(name)
    content = load_yaml(path)
    try:
        validate(Path(path).stem, content, str(path))
    except ConfigError as exc:
        raise ResourceError(str(exc)) from None
    return content


def node_parameters(name: str, node_name: str) -> dict[str, Any]:
    """The `ros__parameters` of one node from a ROS 2 params file in config/."""
    content = load_config(name)
    try:
        return dict(content[node_name]["ros__parameters"])
    except (KeyError, TypeError) as exc:
        raise ResourceError(f"{config_path(name)} has no '{node_name}: ros__parameters:' section") from exc


def cache_dir(*parts: str) -> Path:
    """A writable cache folder (TPR_CACHE_DIR, else ~/.cache/tactile_pose_refiner)."""
    base = os.environ.get("TPR_CACHE_DIR") or Path.home() / ".cache" / PACKAGE_NAME
    path = Path(base).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
