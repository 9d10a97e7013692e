"""Config files are checked against their definitions: a typo or a wrong type is an error that
names the file, the key and the nearest accepted key; `tpr config --check` checks a folder."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from tactile_pose_refiner import config_check
from tactile_pose_refiner.core.config_schema import ROS_PARAMS_FILES, SCHEMAS
from tactile_pose_refiner.core.resources import ResourceError, load_config

from conftest import REPO


@pytest.fixture
def user_config(tmp_path, monkeypatch):
    """A user's copy of config/ as the share dir; returns (folder, edit(name, change))."""
    folder = tmp_path / "config"
    shutil.copytree(REPO / "config", folder)
    monkeypatch.setenv("TPR_SHARE_DIR", str(tmp_path))

    def edit(name, change):
        path = folder / f"{name}.yaml"
        content = yaml.safe_load(path.read_text())
        change(content)
        path.write_text(yaml.safe_dump(content))
        return path

    return folder, edit


def misspelt(key: str) -> str:
    return key[0] + key  # a doubled first letter: still nearest to the original


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_a_misspelt_key_names_the_file_the_key_and_the_nearest_one(user_config, name):
    _, edit = user_config
    last = list(yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text()))[-1]
    path = edit(name, lambda content: content.__setitem__(misspelt(last), content.pop(last)))
    with pytest.raises(ResourceError) as error:
        load_config(name)
    message = str(error.value)
    assert str(path) in message and f"unknown key '{misspelt(last)}'" in message
    assert f"did you mean '{last}'?" in message


def test_nested_typos_and_wrong_types_are_located(user_config):
    _, edit = user_config

    def damage(content):
        content["variants"]["ours"]["sourcs"] = content["variants"]["ours"].pop("sources")
        content["step"]["decay"] = "fast"

    edit("refiner", damage)
    with pytest.raises(ResourceError) as error:
        load_config("refiner")
    message = str(error.value)
    assert "unknown key 'variants.ours.sourcs'; did you mean 'sources'?" in message
    assert "'step.decay': Input should be a valid number" in message and "'fast'" in message
    edit("realism", lambda c: c["presets"]["harsh"]["mask"].__setitem__("blob_radus_px", [3, 8]))
    with pytest.raises(ResourceError, match="presets.harsh.mask.blob_radus_px'; did you mean 'blob_radius_px'"):
        load_config("realism")


def test_the_shipped_config_folder_passes_the_check(capsys):
    assert config_check.main(str(REPO / "config")) == 0
    checked = len(SCHEMAS) + len(ROS_PARAMS_FILES)
    assert capsys.readouterr().out.strip().endswith(f"{checked} files checked in {REPO / 'config'}, 0 problems")


def test_ros_params_files_are_checked_against_the_declared_parameters(user_config, capsys):
    folder, edit = user_config

    def damage(content):
        section = content["refiner_node"]["ros__parameters"]
        section["queue_sise"] = section.pop("queue_size")
        section["input_wait_s"] = 2  # ROS: an int is not a double
        content["rgbd_nod"] = content.pop("rgbd_node")

    edit("nodes", damage)
    assert config_check.main(str(folder)) == 1
    out = capsys.readouterr().out
    assert "refiner_node has no parameter 'queue_sise'; did you mean 'queue_size'?" in out
    assert "refiner_node.input_wait_s must be float like its default 2.0, got 2" in out
    assert "unknown node 'rgbd_nod'; did you mean 'rgbd_node'?" in out
    assert out.strip().endswith("3 problems")


def test_a_node_reports_a_parameter_it_does_not_declare():
    """A typo in a params file reaches the node as an undeclared override: an error, not silence."""
    probe = (
        "import rclpy\n"
        "from tactile_pose_refiner.nodes.rgbd_node import RgbdNode\n"
        "rclpy.init(args=['rgbd_node', '--ros-args', '-p', 'slop_z:=0.02'])\n"
        "node = RgbdNode()\n"
        "node.destroy_node(); rclpy.shutdown()\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "unknown parameters ['slop_z'] (ignored)" in result.stderr + result.stdout
