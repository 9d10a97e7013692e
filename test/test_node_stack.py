"""The product's node graph end to end: separate node processes over Fast DDS, a real rosbag2
episode replayed by bag_replay_node, refined poses and diagnostics collected by an observer;
and every node fed bad input keeps running and says so on /diagnostics."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String

from tactile_pose_refiner.core.overlay import OUTLINE_COLOURS
from tactile_pose_refiner.core.resources import config_path, load_config
from tactile_pose_refiner.graph import NodeProcess, RunningGraph, refiner_graph
from tactile_pose_refiner.io.episode_bag import write_episode
from tactile_pose_refiner.msg import RgbdBundle, TactileArray
from tactile_pose_refiner.nodes.conversions import image_msg, ns_to_stamp
from tactile_pose_refiner.nodes.monitor import GraphMonitor
from tactile_pose_refiner.replay import replay_episode

import scenes
from conftest import REPO

pytestmark = pytest.mark.slow  # node processes over DDS, or a build: see docs/development.md

FRAMES = 3


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "005_tomato_soup_can_000"
    _, frames = scenes.generator().replay(
        "005_tomato_soup_can", scenes.stored_grasp("005_tomato_soup_can"), steps=FRAMES, seed=4
    )
    write_episode(path, frames)
    return path


# In 2 of ~8 CI runs one node (rgbd_node, once tactile_node) was still running 10 s after SIGINT
# and was killed; cause unknown (its stacks are printed below when it happens; Fast DDS teardown
# hangs are known upstream, eProsima/Fast-DDS#235, #1144). One rerun keeps CI from failing on it.
@pytest.mark.flaky(reruns=1)
def test_replayed_episode_is_refined_through_the_node_graph(episode):
    import torch

    cuda = torch.cuda.is_available()  # without CUDA the refiner falls back to cpu, labelled
    run = replay_episode(
        episode,
        {"refiner_node": {"iterations": 15, "device": "cuda"}, "estimator_node": {"mode": "ground_truth_noise"}},
        start_timeout_s=90,
        frame_timeout_s=90,
        log=lambda text: None,
        overlay=True,
    )
    rows = run.rows()
    failures = {}
    for name, (code, _, err) in run.exits.items():
        if code not in (0, None):
            failures[name] = (code, err[-1500:])
            print(f"--- {name} exited {code}; its stderr:\n{err}")  # whole: pytest shortens the assertion's
    assert len(rows) >= 0.95 * FRAMES, (rows, failures, run.statuses[-20:])
    assert run.frames_replayed == FRAMES
    for entry in run.refined():
        assert np.isfinite(entry["T_refined"]).all()
        assert entry["result"].object_id == "005_tomato_soup_can"
        assert entry["result"].initial_pose_source.startswith("ground_truth_noise:accurate")
        assert entry["result"].start.startswith(("lm: ", "lm fit poor")), entry["result"].start
        assert entry["result"].iterations >= 1 and entry["result"].device == ("cuda" if cuda else "cpu")
        assert cuda or "degraded: device cuda unusable, ran on cpu" in entry["result"].status
        result = entry["result"]  # per-source arrays, and the deprecated fields agreeing with them
        assert list(result.source_names) == ["physics", "render", "depth", "tactile"]
        assert np.isfinite(result.source_losses).all() and 0 < sum(result.source_weights) <= 1 + 1e-3
        assert result.source_losses[1] == result.loss_render and result.source_weights[3] == result.weight_tactile
    # Better than the initial pose in intersection volume on average, and closer to the truth.
    assert np.mean([r["iv_after"] for r in rows]) < np.mean([r["iv_before"] for r in rows])
    assert np.mean([r["pe_after"] for r in rows]) < np.mean([r["pe_before"] for r in rows])  # NaN: missed
    refiner_statuses = [m for name, _, m in run.statuses if name.endswith("/refiner_node")]
    assert any(m.startswith("refined:") for m in refiner_statuses), refiner_statuses  # /diagnostics too
    assert all(code in (0, None) for code, _, _ in run.exits.values()), failures
    overlays = [entry["overlay"] for entry in run.frames.values() if "overlay" in entry]
    assert overlays, "refiner/overlay never came while subscribed"
    image = np.frombuffer(bytes(overlays[0].data), np.uint8).reshape(overlays[0].height, overlays[0].width, 3)
    assert (image == OUTLINE_COLOURS["refined"]).all(axis=2).sum() > 50  # the refined outline is drawn
    assert_rviz_displays_find_their_topics(run.topics)


def assert_rviz_displays_find_their_topics(topics: dict[str, list[str]]) -> None:
    """Every display of rviz/refiner.rviz names a topic the running graph publishes, with the
    type the display reads (TF only where tf2_msgs is importable: without it nothing sends /tf)."""
    import importlib.util

    import yaml

    config = yaml.safe_load((REPO / "rviz" / "refiner.rviz").read_text())
    checked = 0
    for display in config["Visualization Manager"]["Displays"]:
        kind = display["Class"].rpartition("/")[2]
        topic = (display.get("Topic") or display.get("Description Topic") or {}).get("Value")
        if kind == "TF":
            topic = "/tf" if importlib.util.find_spec("tf2_msgs") else None
        if topic is None:
            continue
        assert RVIZ_TYPES[kind] in topics.get(topic, []), (display["Name"], topic, topics.get(topic))
        checked += 1
    assert checked >= 8


RVIZ_TYPES = {
    "Image": "sensor_msgs/msg/Image",
    "PointCloud2": "sensor_msgs/msg/PointCloud2",
    "Pose": "geometry_msgs/msg/PoseStamped",
    "MarkerArray": "visualization_msgs/msg/MarkerArray",
    "RobotModel": "std_msgs/msg/String",
    "TF": "tf2_msgs/msg/TFMessage",
}


def test_with_the_camera_topics_absent_the_refiner_refines_from_touch(episode):
    """refiner_node never receives an RGB-D bundle (its subscription remapped to a topic nobody
    publishes): every initial pose is refined from touch, the hand and physics, published and
    labelled touch_only, and the intersection falls."""
    run = replay_episode(
        episode,
        {"refiner_node": {"input_wait_s": 3.0}, "estimator_node": {"mode": "classical"}},  # (it reads the bundles)
        start_timeout_s=90,
        frame_timeout_s=90,
        log=lambda text: None,
        remaps={"refiner_node": {"rgbd/bundle": "rgbd/bundle_nobody_publishes"}},
    )
    rows = run.rows()
    assert len(rows) == FRAMES, run.statuses[-10:]
    for entry in run.refined():
        assert "touch_only: no RGB-D bundle" in entry["result"].status and np.isfinite(entry["T_refined"]).all()
        assert list(entry["result"].source_names) == ["physics", "tactile"]
    assert np.mean([r["iv_after"] for r in rows]) < np.mean([r["iv_before"] for r in rows])


def test_replay_estimates_from_images_and_touch_then_refines(episode):
    """The estimator on the replayed images and touch (no ground truth): every frame gets an
    initial pose within the paper's estimator accuracy, labelled classical, then refined."""
    run = replay_episode(
        episode,
        {"refiner_node": {"iterations": 10}, "estimator_node": {"mode": "classical"}},
        start_timeout_s=90,
        frame_timeout_s=90,
        log=lambda text: None,
    )
    rows = run.rows()
    problems = sorted({status for status in run.statuses if status[1] != 0})
    assert len(rows) == FRAMES, ([row["stamp_ns"] for row in rows], problems)
    for row, entry in zip(rows, run.refined()):
        assert entry["result"].initial_pose_source == "classical"
        assert row["pe_before"] < 0.65 and row["oe_before"] < 6.98, row  # the paper's estimator: 0.65 cm, 6.98 deg
        assert np.isfinite(entry["T_refined"]).all()
    estimates = [m for name, _, m in run.statuses if name.endswith("/estimator_node")]
    assert any(m.startswith("estimated: ok") for m in estimates), estimates


def _header(stamp_ns: int, frame_id: str = "camera_color_optical_frame"):
    from std_msgs.msg import Header

    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


def _camera_info(header) -> CameraInfo:
    camera = load_config("camera")
    info = CameraInfo(header=header, width=64, height=48)
    info.k = [float(camera.get("fx", 600.0)), 0.0, 32.0, 0.0, float(camera.get("fy", 600.0)), 24.0, 0.0, 0.0, 1.0]
    return info


def _wait_for(monitor: GraphMonitor, node: str, text: str, timeout_s: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        messages = monitor.messages_of(node)
        if any(text in m for m in messages):
            return messages
        time.sleep(0.1)
    raise AssertionError(f"{node} never reported '{text}'; it said {sorted(set(monitor.messages_of(node)))}")


def _wait_for_matches(publisher, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while publisher.get_subscription_count() < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert publisher.get_subscription_count() >= count, (
        f"{publisher.topic_name}: {publisher.get_subscription_count()} of {count} readers matched"
    )


def test_nodes_fed_bad_input_keep_running_and_report_it(ros_env, tmp_path):
    topics = load_config("topics")
    # the learned estimator without any checkpoint (an empty cache): it must fall back, labelled
    nodes = refiner_graph({"joint_state_node": {"max_age_s": 5.0}, "estimator_node": {"mode": "learned"}})
    with (
        RunningGraph({**ros_env, "TPR_CACHE_DIR": str(tmp_path / "cache")}) as graph,
        GraphMonitor(int(ros_env["ROS_DOMAIN_ID"])) as monitor,
    ):
        for name, node in nodes.items():
            graph.start(name, node)
        wanted = [
            topics["color_image"],
            topics["joint_states"],
            topics["tactile"],
            "/estimator/initial_pose",
            "/rgbd/bundle",
            topics["ground_truth_pose"],
        ]
        assert not monitor.wait_for_subscribers(wanted, 90)
        time.sleep(1.0)
        pub = {
            key: monitor.publisher(kind, topic)
            for key, (kind, topic) in {
                "color": (Image, topics["color_image"]),
                "depth": (Image, topics["depth_image"]),
                "info": (CameraInfo, topics["color_camera_info"]),
                "mask": (Image, topics["object_mask"]),
                "joints": (JointState, topics["joint_states"]),
                "tactile": (TactileArray, topics["tactile"]),
                "object": (String, topics["object_id"]),
                "gt": (PoseStamped, topics["ground_truth_pose"]),
                "initial": (PoseStamped, "/estimator/initial_pose"),
                "bundle": (RgbdBundle, "/rgbd/bundle"),
            }.items()
        }
        # every message below is sent once, and robot-mode readers keep no history: each
        # publisher must have matched every reader first (joint_state_node's once had not, under load)
        for publisher in pub.values():
            _wait_for_matches(publisher, monitor.node.count_subscribers(publisher.topic_name))
        now = time.time_ns()

        # rgbd_node: depth all NaN (32FC1) -> degraded, then a wrong colour encoding -> error.
        header = _header(now)
        rgb, mask = np.zeros((48, 64, 3), np.uint8), np.full((48, 64), 255, np.uint8)
        for message in (
            image_msg(rgb, "rgb8", header),
            image_msg(np.full((48, 64), np.nan, np.float32), "32FC1", header),
            _camera_info(header),
            image_msg(mask, "mono8", header),
        ):
            pub[
                {"rgb8": "color", "32FC1": "depth", "mono8": "mask"}.get(getattr(message, "encoding", ""), "info")
            ].publish(message)
        _wait_for(monitor, "rgbd_node", "degraded: 0 valid depth points")
        header = _header(now + 10**8)
        pub["color"].publish(image_msg(np.zeros((48, 64, 2), np.uint16), "rgb16", header))
        pub["depth"].publish(image_msg(np.zeros((48, 64), np.uint16), "16UC1", header))
        pub["info"].publish(_camera_info(header))
        pub["mask"].publish(image_msg(mask, "mono8", header))
        _wait_for(monitor, "rgbd_node", "colour encoding 'rgb16' is not supported")

        # joint_state_node: missing joints -> error; a stamp an hour old -> stale.
        pub["joints"].publish(JointState(header=_header(now, ""), name=["ah_joint00"], position=[0.1]))
        _wait_for(monitor, "joint_state_node", "lacks hand joints")
        names = [f"ah_joint{f}{j}" for f in range(4) for j in range(4)]
        pub["joints"].publish(JointState(header=_header(now - 3600 * 10**9, ""), name=names, position=[0.0] * 16))
        _wait_for(monitor, "joint_state_node", "stale input")

        # tactile_node: an empty reading is forwarded and reported; inconsistent arrays -> error.
        pub["tactile"].publish(TactileArray(header=_header(now, "")))
        _wait_for(monitor, "tactile_node", "empty tactile reading")
        pub["tactile"].publish(TactileArray(header=_header(now, ""), link_names=["link_13"]))
        _wait_for(monitor, "tactile_node", "unusable tactile reading")

        # estimator_node and refiner_node: an unknown object; refiner_node: a NaN initial pose.
        # The object id is read volatile on a robot: publish only once the estimator's and the
        # refiner's readers have matched ours (on a loaded CI machine the refiner once had not,
        # and reported "no object id received" instead).
        _wait_for_matches(pub["object"], 2)
        pub["object"].publish(String(data="999_not_in_the_catalog"))
        time.sleep(0.5)
        bundle = RgbdBundle(
            header=_header(now),
            color=image_msg(rgb, "rgb8", _header(now)),
            depth=image_msg(np.full((48, 64), 500, np.uint16), "16UC1", _header(now)),
            camera_info=_camera_info(_header(now)),
            status="ok",
        )
        pub["bundle"].publish(bundle)
        _wait_for(monitor, "estimator_node", "unknown object")
        initial = PoseStamped(header=_header(now))
        initial.pose.orientation.w = 1.0
        pub["initial"].publish(initial)
        _wait_for(monitor, "refiner_node", "unknown object")
        initial.pose.position.x = float("nan")
        pub["initial"].publish(initial)
        _wait_for(monitor, "refiner_node", "unusable initial pose")

        # estimator_node: a known object but a bundle without segmentation -> no estimate, said why.
        pub["object"].publish(String(data="005_tomato_soup_can"))
        time.sleep(0.5)
        bundle.header = _header(now + 2 * 10**8)
        pub["bundle"].publish(bundle)
        _wait_for(monitor, "estimator_node", "fallback to classical: no learned estimator for 005_tomato_soup_can", 60)
        _wait_for(monitor, "estimator_node", "no estimate: no input: no segmentation mask", 60)

        time.sleep(0.5)
        still_running = {name: process.poll() is None for name, process in graph.processes.items()}
        refined = [entry for entry in monitor.snapshot().values() if "T_refined" in entry]
        results = graph.stop()
    assert all(still_running.values()), {n: results[n][2][-1500:] for n, up in still_running.items() if not up}
    assert refined == []  # nothing was refinable: no pose, and certainly no NaN one


def test_estimator_keeps_what_came_before_the_object_id_and_late_nodes_get_the_latched_id(ros_env):
    """Over DDS a frame's pieces arrive in any order: a ground truth before the object id still
    gets its initial pose; an estimator started after the object id was published still gets it."""
    topics = load_config("topics")
    estimator = refiner_graph({"estimator_node": {"mode": "ground_truth_noise", "reliable_inputs": True}})[
        "estimator_node"
    ]
    with RunningGraph(ros_env) as graph, GraphMonitor(int(ros_env["ROS_DOMAIN_ID"])) as monitor:
        truth, object_id = (
            monitor.publisher(PoseStamped, topics["ground_truth_pose"]),
            monitor.publisher(String, topics["object_id"]),
        )
        graph.start("early", estimator)
        assert not monitor.wait_for_subscribers([topics["ground_truth_pose"], topics["object_id"]], 60)
        time.sleep(1.0)
        first, second = time.time_ns(), time.time_ns() + 10**8
        for stamp in (first, second):
            pose = PoseStamped(header=_header(stamp))
            pose.pose.position.z, pose.pose.orientation.w = 0.5, 1.0
            truth.publish(pose)
        time.sleep(1.0)
        object_id.publish(String(data="005_tomato_soup_can"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            "T_initial" in monitor.snapshot().get(s, {}) for s in (first, second)
        ):
            time.sleep(0.1)
        graph.processes["early"].send_signal(signal.SIGINT)
        graph.processes["early"].wait(15)
        graph.start("late", estimator)
        time.sleep(1.0)
        later = time.time_ns()
        pose.header = _header(later)
        truth.publish(pose)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "T_initial" not in monitor.snapshot().get(later, {}):
            time.sleep(0.1)
        frames = monitor.snapshot()
    assert all("T_initial" in frames.get(s, {}) for s in (first, second)), sorted(
        set(monitor.messages_of("estimator_node"))
    )
    assert "T_initial" in frames.get(later, {})


def test_launch_and_graph_name_only_existing_executables_and_parameter_files():
    """What launch files and `tpr demo` start: console scripts of setup.py with their
    config/nodes.yaml section, whose parameters are the ones the node declares."""
    import importlib
    from importlib.metadata import distribution

    import yaml

    scripts = {e.name for e in distribution("tactile_pose_refiner").entry_points.select(group="console_scripts")}
    sections = yaml.safe_load(config_path("nodes").read_text())
    for name, node in refiner_graph().items():
        assert node.executable in scripts and all(p.is_file() for p in node.params_files)
        declared = importlib.import_module(f"tactile_pose_refiner.nodes.{name}").PARAMETERS
        configured = sections[name]["ros__parameters"]
        assert set(configured) == set(declared), name
        assert all(type(configured[k]) is type(v[0]) and v[1] for k, v in declared.items()), name
    assert NodeProcess("refiner_node", [config_path("nodes")]).command()[1:3] == ["--ros-args", "--params-file"]


def test_track_mode_publishes_a_pose_on_every_frame(tmp_path):
    """refiner_node mode:=track on a replayed in-hand episode (30 Hz stamps): the first initial
    pose starts the track, then every frame gets a pose near the truth, labelled tracking; with
    gravity given, /diagnostics says what it can tell of the mass."""
    from tactile_pose_refiner.sim.episode import EpisodeGenerator

    path = tmp_path / "006_mustard_bottle_000"
    grasp = scenes.stored_grasp("006_mustard_bottle")
    _, frames = EpisodeGenerator(motion="in_hand").replay("006_mustard_bottle", grasp, steps=12, seed=3)
    write_episode(path, frames)
    run = replay_episode(
        path,
        {
            "refiner_node": {"mode": "track", "gravity_cam": "0.0,9.81,0.0"},
            "estimator_node": {"mode": "ground_truth_noise"},
        },
        start_timeout_s=90,
        frame_timeout_s=20,  # a frame whose bundle came before the first initial pose gets none
        log=lambda text: None,
    )
    rows = run.rows()
    statuses = [row["status"] for row in rows]
    assert len(rows) >= 10, (statuses, run.statuses[-20:])  # the frames before the first initial pose wait
    assert statuses[0].startswith("reinitialised") and all(s.startswith("tracking") for s in statuses[1:]), statuses
    assert max(row["pe_after"] for row in rows) < 0.2 and max(row["oe_after"] for row in rows) < 2.0
    estimator = [message for name, _, message in run.statuses if name.endswith("/estimator_node")]
    assert "resting: the refiner's track holds" in estimator, estimator  # no estimates while tracking
    refiner = [message for name, _, message in run.statuses if name.endswith("/refiner_node")]
    # the mass while tracking, on /diagnostics: this episode's touch carries no calibration (force_scale 0)
    assert any(m.startswith("tracking; mass: no calibrated touch") for m in refiner), refiner[-10:]
    assert all(code in (0, None) for code, _, _ in run.exits.values())
