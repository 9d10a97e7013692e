"""Run the package's nodes as separate processes, isolated from other ROS graphs.

What `ros2 launch` does on a robot, for the places where launch is not installable (this
development machine, `tpr demo`, the integration tests). Imports no rclpy: it only builds
command lines (`--ros-args --params-file ... -p ... -r ...`) and environments.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class NodeProcess:
    """One node executable and its ROS arguments."""

    executable: str
    params_files: list[Path] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    remaps: dict[str, str] = field(default_factory=dict)
    arguments: list[str] = field(default_factory=list)  # the executable's own, before --ros-args

    def command(self) -> list[str]:
        ros_args: list[str] = []
        for params_file in self.params_files:
            ros_args += ["--params-file", str(params_file)]
        for name, value in self.parameters.items():
            ros_args += ["-p", f"{name}:={format_parameter(value)}"]
        for source, target in self.remaps.items():
            ros_args += ["-r", f"{source}:={target}"]
        return [executable_path(self.executable), *self.arguments, "--ros-args", *ros_args]


def format_parameter(value: Any) -> str:
    """A parameter value as ROS command-line YAML (`[1, 2]`, `true`, `'text'`)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip().removesuffix("\n...").strip()


def executable_path(name: str) -> str:
    """Console script of this environment (the venv's bin/ first), else from PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"node executable '{name}' not found beside {sys.executable} "
            "nor on PATH; is the package installed (tools/setup.sh)?"
        )
    return found


def dds_profile_environment(environ=os.environ) -> dict[str, str]:
    """The Fast DDS profile of the graph's processes (config/fastdds.xml: a shared-memory segment
    for the large images), unless the user set their own. Fast DDS 2 (Jazzy) reads the
    FASTRTPS_ name, Fast DDS 3 the FASTDDS_ one (and warns about the old)."""
    from tactile_pose_refiner.core.resources import share_dir

    names = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
    if any(name in environ for name in names):
        return {}
    name = names[1] if environ.get("ROS_DISTRO") in ("humble", "jazzy") else names[0]
    return {name: str(share_dir() / "config" / "fastdds.xml")}


@contextlib.contextmanager
def isolated_ros_environment(log_dir: Path | None = None) -> Iterator[dict[str, str]]:
    """Environment for a private ROS graph on this machine.

    Discovery stays on localhost, the domain id is one no other process on this machine
    holds (ros-domain-coordinator reserves it while the context is open), and logs go to
    `log_dir` (a temporary directory by default) instead of ~/.ros/log.
    """
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tpr-ros-log-")))
        domain_id = stack.enter_context(_reserved_domain_id())
        env = dict(os.environ) | dds_profile_environment()
        # PYTHONFAULTHANDLER: a node that crashes in native code leaves a traceback.
        env.update(
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            ROS_DOMAIN_ID=str(domain_id),
            ROS_LOG_DIR=str(log_dir),
            PYTHONUNBUFFERED="1",
            PYTHONFAULTHANDLER="1",
        )
        yield env


@contextlib.contextmanager
def _reserved_domain_id() -> Iterator[int]:
    try:
        import domain_coordinator
    except ImportError:  # not on a robot install: fall back to a pid-derived id
        yield 1 + os.getpid() % 100
        return
    with domain_coordinator.domain_id() as domain_id:
        yield int(domain_id)


class RunningGraph:
    """Processes started together and stopped together (SIGINT, then SIGKILL)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: dict[str, subprocess.Popen] = {}
        self.outputs: dict[str, tuple] = {}

    def start(self, name: str, node: NodeProcess) -> subprocess.Popen:
        # output goes to files, not pipes: a pipe nobody reads until stop fills (64 kB) and
        # blocks the node's next log line (a looping replay stalled after ~17 s)
        outputs = (tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+"))
        process = subprocess.Popen(node.command(), env=self.env, stdout=outputs[0], stderr=outputs[1], text=True)
        self.processes[name], self.outputs[name] = process, outputs
        return process

    def stop(self, timeout_s: float = 10.0) -> dict[str, tuple[int, str, str]]:
        """Stop every process; returns name -> (exit code, stdout, stderr)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        results = {}
        for name, process in self.processes.items():
            note = ""
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                stacks_dumped(process)
                process.kill()
                process.wait()
                note = f"\n[RunningGraph] still running {timeout_s:.0f} s after SIGINT: killed (its stacks above)\n"
            streams = self.outputs.pop(name, None)  # read once: a second stop() returns no output
            stdout, stderr = (_read_and_close(stream) for stream in streams) if streams else ("", "")
            results[name] = (process.returncode, stdout, stderr + note)
        return results

    def __enter__(self) -> RunningGraph:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def stacks_dumped(process: subprocess.Popen) -> None:
    """Asks a node that does not stop for its threads' Python stacks (run_node registers
    SIGUSR1 with faulthandler), written to its stderr: where it hangs."""
    process.send_signal(signal.SIGUSR1)
    time.sleep(1.0)


def _read_and_close(stream) -> str:
    stream.seek(0)
    text = stream.read()
    stream.close()
    return text


# --- the product's node graph (launch/*.launch.py and `tpr demo` share it) ---------------------
SENSOR_NODES = ("joint_state_node", "tactile_node", "rgbd_node")
REFINER_NODES = (*SENSOR_NODES, "estimator_node", "refiner_node")
# How the refinement graph can share processes (process name -> its nodes; nodes/composed.py).
# One interpreter computes on one core at a time (the GIL); on 2 cores even `all` tracks at 22 Hz
# (docs/benchmarks.md), while in refine mode the estimator and the refiner then share a core.
COMPOSITIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "all": {"refinement_graph": REFINER_NODES},
    "sensors": {"sensor_nodes": SENSOR_NODES, "estimator_node": ("estimator_node",), "refiner_node": ("refiner_node",)},
    "two": {"sensor_nodes": SENSOR_NODES, "estimation_nodes": ("estimator_node", "refiner_node")},
}


def refiner_graph(
    parameters: dict[str, dict[str, Any]] | None = None, params_file: Path | None = None
) -> dict[str, NodeProcess]:
    """Node name -> NodeProcess of the refinement graph (sensor topics in, refinement out).

    Every node reads its section of config/nodes.yaml; `parameters` overrides per node.
    """
    from tactile_pose_refiner.core.resources import config_path

    params_file = params_file or config_path("nodes")
    parameters = parameters or {}
    return {name: NodeProcess(name, [params_file], dict(parameters.get(name, {}))) for name in REFINER_NODES}


def composed_graph(
    parameters: dict[str, dict[str, Any]] | None = None, params_file: Path | None = None, composition: str = "all"
) -> dict[str, NodeProcess]:
    """The refinement graph in the processes of COMPOSITIONS[composition] (nodes/composed.py for
    a process of several nodes): per-node overrides go into a params file of their own, since a -p
    override would reach every node of the process."""
    from tactile_pose_refiner.core.resources import config_path

    if composition not in COMPOSITIONS:
        raise ValueError(f"unknown composition {composition!r}; known: {', '.join(COMPOSITIONS)}")
    files = [params_file or config_path("nodes")]
    if parameters:
        overrides = {name: {"ros__parameters": values} for name, values in parameters.items() if values}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="tpr-overrides-", delete=False) as stream:
            yaml.safe_dump(overrides, stream)
        files.append(Path(stream.name))
    return {
        name: NodeProcess(nodes[0], list(files))
        if len(nodes) == 1
        else NodeProcess("refinement_graph", list(files), arguments=["--nodes", ",".join(nodes)])
        for name, nodes in COMPOSITIONS[composition].items()
    }


def replay_graph(
    bag: str | Path, parameters: dict[str, dict[str, Any]] | None = None, params_file: Path | None = None
) -> dict[str, NodeProcess]:
    """The refinement graph plus bag_replay_node playing `bag`, set up to refine every
    recorded frame: reliable inputs, and the estimator and the refiner queue every frame."""
    from tactile_pose_refiner.core.resources import config_path

    given = parameters or {}
    parameters = {name: {"reliable_inputs": True, **given.get(name, {})} for name in REFINER_NODES}
    for name in ("estimator_node", "refiner_node"):
        parameters[name] = {"queue_size": 0, **parameters[name]}
    nodes = refiner_graph(parameters, params_file)
    nodes["bag_replay_node"] = NodeProcess(
        "bag_replay_node", [params_file or config_path("nodes")], {"bag": str(bag), **given.get("bag_replay_node", {})}
    )
    return nodes
