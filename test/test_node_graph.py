"""Nodes as separate processes over Fast DDS, started from their console scripts with
--ros-args, a params file, parameter overrides and remaps (what ros2 launch would pass)."""

from __future__ import annotations

import json

import pytest
import yaml

from tactile_pose_refiner.graph import NodeProcess, RunningGraph

from conftest import REPO

pytestmark = pytest.mark.slow  # node processes over DDS, or a build: see docs/development.md

SIM_CONFIG = REPO / "config" / "tactile_sim.yaml"


def echo_records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_tactile_array_travels_between_two_processes(ros_env):
    expected = yaml.safe_load(SIM_CONFIG.read_text())["tactile_sim_node"]["ros__parameters"]
    echo = NodeProcess(
        "topic_echo", [REPO / "config" / "topic_echo.yaml"], {"topic": "/hand/tactile", "count": 3, "timeout_s": 20.0}
    )
    source = NodeProcess("tactile_sim_node", [SIM_CONFIG], {"force_scale": 0.0025}, remaps={"tactile": "/hand/tactile"})
    with RunningGraph(ros_env) as graph:
        receiver = graph.start("echo", echo)
        graph.start("source", source)
        receiver.wait(timeout=40)
        results = graph.stop()
    code, stdout, stderr = results["echo"]
    assert code == 0, stderr + results["source"][2]
    records = echo_records(stdout)
    assert len(records) == 3 and records[0]["topic"] == "/hand/tactile"
    message = records[0]["message"]
    assert message["link_names"] == expected["link_names"]  # from the params file
    assert [f["z"] for f in message["forces"]] == expected["forces"][2::3]
    assert [p["x"] for p in message["positions"]] == expected["taxel_positions"][0::3]
    assert message["force_scale"] == pytest.approx(0.0025, rel=1e-6)  # -p override (float32)
    assert message["header"]["frame_id"] == expected["frame_id"]
    assert message["header"]["stamp"]["sec"] > 0
    stamps = [r["message"]["header"]["stamp"] for r in records]
    assert len({(s["sec"], s["nanosec"]) for s in stamps}) == 3  # three distinct readings


def test_echo_times_out_cleanly_when_nothing_is_published(ros_env):
    echo = NodeProcess(
        "topic_echo",
        [REPO / "config" / "topic_echo.yaml"],
        {"topic": "/nobody/publishes/here", "count": 1, "timeout_s": 1.0},
    )
    with RunningGraph(ros_env) as graph:
        graph.start("echo", echo).wait(timeout=30)
        code, stdout, stderr = graph.stop()["echo"]
    assert code == 3 and "timeout: 0 of 1 messages" in stderr and stdout.strip() == ""


def test_sim_node_rejects_inconsistent_parameters_with_a_clear_error(ros_env):
    source = NodeProcess("tactile_sim_node", [SIM_CONFIG], {"forces": [1.0, 2.0, 3.0]})
    with RunningGraph(ros_env) as graph:
        graph.start("source", source).wait(timeout=30)
        code, _, stderr = graph.stop()["source"]
    assert code == 2 and "invalid tactile pattern parameters" in stderr
    assert "forces has 1 entries, link_names has 5" in stderr


def test_config_files_match_the_declared_node_parameters():
    """config/*.yaml and each node's declared defaults name the same parameters and types."""
    from tactile_pose_refiner.nodes import tactile_sim_node, topic_echo

    for module, node_name in ((tactile_sim_node, "tactile_sim_node"), (topic_echo, "topic_echo")):
        config = yaml.safe_load((REPO / "config" / f"{node_name.removesuffix('_node')}.yaml").read_text())[node_name][
            "ros__parameters"
        ]
        assert set(config) == set(module.PARAMETERS), node_name
        for name, (default, description) in module.PARAMETERS.items():
            assert description and type(config[name]) is type(default), (node_name, name)


def test_a_composition_puts_every_refinement_node_in_exactly_one_process():
    from tactile_pose_refiner.graph import COMPOSITIONS, REFINER_NODES, composed_graph
    from tactile_pose_refiner.nodes.composed import parse_node_names

    for name, processes in COMPOSITIONS.items():
        assert sorted(node for nodes in processes.values() for node in nodes) == sorted(REFINER_NODES), name
        graph = composed_graph({"refiner_node": {"mode": "track"}}, composition=name)
        assert list(graph) == list(processes)
        for process, nodes in processes.items():
            command = graph[process].command()
            assert parse_node_names(command) == list(nodes) if len(nodes) > 1 else command[0].endswith(nodes[0])
    with pytest.raises(ValueError, match="unknown composition"):
        composed_graph(composition="three")
