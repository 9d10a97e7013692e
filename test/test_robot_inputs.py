"""Robot mode: the inputs a fuzzer and a real robot produce (wrong joint counts, duplicate or
non-finite joints, absurd intrinsics, a stamp from the far future, forces beyond the sensor's
range, unknown taxels, a zero quaternion) reach the sensor nodes over DDS with robot settings.
No node exits, each problem is named on /diagnostics, nothing NaN is published, and the nodes
go on with the next good input."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
from std_msgs.msg import Header, String

from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.graph import RunningGraph, refiner_graph
from tactile_pose_refiner.msg import RgbdBundle, TactileArray
from tactile_pose_refiner.nodes.common import input_qos
from tactile_pose_refiner.nodes.conversions import image_msg, ns_to_stamp
from tactile_pose_refiner.nodes.monitor import GraphMonitor

pytestmark = pytest.mark.slow  # node processes over DDS

JOINTS = [f"ah_joint{finger}{joint}" for finger in range(4) for joint in range(4)]
NODES = ("rgbd_node", "tactile_node", "joint_state_node", "estimator_node")


def header(stamp_ns: int, frame_id: str = "camera_color_optical_frame") -> Header:
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


def camera_info(stamp_ns: int, fx: float) -> CameraInfo:
    info = CameraInfo(header=header(stamp_ns), width=64, height=48)
    info.k = [fx, 0.0, 32.0, 0.0, fx, 24.0, 0.0, 0.0, 1.0]
    return info


def tactile(stamp_ns: int, ids: list[int], force: float) -> TactileArray:
    from geometry_msgs.msg import Point, Vector3

    return TactileArray(
        header=header(stamp_ns, ""),
        link_names=["link_13"] * len(ids),
        taxel_ids=ids,
        positions=[Point() for _ in ids],
        forces=[Vector3(z=force) for _ in ids],
    )


class Clouds:
    """Every tactile/contacts cloud the graph publishes, as (N, 3) arrays."""

    def __init__(self, monitor: GraphMonitor) -> None:
        self.lock, self.clouds = threading.Lock(), []
        monitor.node.create_subscription(PointCloud2, "/tactile/contacts", self.add, input_qos(reliable=True))

    def add(self, msg: PointCloud2) -> None:
        with self.lock:
            self.clouds.append(np.frombuffer(bytes(msg.data), dtype=np.float32).reshape(-1, 3))


def wait_for(monitor: GraphMonitor, node: str, text: str, timeout_s: float = 30.0, send=None) -> None:
    """Until `node` reports `text`; send(): the input, sent now and again every second (a
    best-effort reader that has not matched the writer yet drops a single message)."""
    deadline = time.monotonic() + timeout_s
    next_send = time.monotonic()
    while time.monotonic() < deadline:
        if any(text in message for message in monitor.messages_of(node)):
            return
        if send is not None and time.monotonic() >= next_send:
            send()
            next_send = time.monotonic() + 1.0
        time.sleep(0.1)
    raise AssertionError(f"{node} never reported '{text}'; it said {sorted(set(monitor.messages_of(node)))}")


def test_fuzzed_sensor_inputs_are_reported_and_never_published_as_nan(ros_env):
    topics = load_config("topics")
    nodes = refiner_graph({"estimator_node": {"mode": "ground_truth_noise"}})
    with RunningGraph(ros_env) as graph, GraphMonitor(int(ros_env["ROS_DOMAIN_ID"])) as monitor:
        for name in NODES:
            graph.start(name, nodes[name])
        clouds = Clouds(monitor)
        assert not monitor.wait_for_nodes(list(NODES), 90)
        pub = {
            key: monitor.publisher(kind, topic)
            for key, (kind, topic) in {
                "color": (Image, topics["color_image"]),
                "depth": (Image, topics["depth_image"]),
                "info": (CameraInfo, topics["color_camera_info"]),
                "mask": (Image, topics["object_mask"]),
                "joints": (JointState, topics["joint_states"]),
                "hand_joints": (JointState, "/hand/joint_states"),
                "tactile": (TactileArray, topics["tactile"]),
                "object": (String, topics["object_id"]),
                "gt": (PoseStamped, topics["ground_truth_pose"]),
            }.items()
        }
        deadline = time.monotonic() + 30  # robot settings read volatile: publish once matched
        while min(p.get_subscription_count() for p in pub.values()) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert min(p.get_subscription_count() for p in pub.values()) >= 1
        bundles = []
        monitor.node.create_subscription(RgbdBundle, "/rgbd/bundle", bundles.append, input_qos(reliable=True))
        now = time.time_ns()

        def rgbd_set(stamp_ns: int, fx: float = 600.0) -> None:
            pub["color"].publish(image_msg(np.zeros((48, 64, 3), np.uint8), "rgb8", header(stamp_ns)))
            pub["depth"].publish(image_msg(np.full((48, 64), 500, np.uint16), "16UC1", header(stamp_ns)))
            pub["info"].publish(camera_info(stamp_ns, fx))
            pub["mask"].publish(image_msg(np.full((48, 64), 255, np.uint8), "mono8", header(stamp_ns)))

        # Joint vectors: 0, 3 and 17 positions, then a valid reading: the taxels are never placed
        # with them (tactile_node used to exit in forward kinematics).
        for count in (0, 3, 17):
            names = (JOINTS + ["extra"])[:count]
            pub["hand_joints"].publish(JointState(header=header(now, ""), name=names, position=[0.1] * count))
        pub["tactile"].publish(tactile(now, [300, 301], 2000.0))
        wait_for(monitor, "tactile_node", "unusable joint state")
        # Non-finite and duplicate joints.
        non_finite = JointState(header=header(now, ""), name=JOINTS, position=[float("nan")] * 16)
        wait_for(monitor, "tactile_node", "non-finite positions", send=lambda: pub["hand_joints"].publish(non_finite))
        twice = JointState(header=header(now, ""), name=JOINTS + ["ah_joint00"], position=[0.1] * 17)
        duplicate = "names hand joint joint00 twice"
        wait_for(monitor, "joint_state_node", duplicate, send=lambda: pub["joints"].publish(twice))
        # Forces beyond the sensor's range; taxel ids the layout does not have.
        huge, unknown = tactile(now + 1, [300], 1e12), tactile(now + 2, [300, 60000], 2000.0)
        wait_for(monitor, "tactile_node", "beyond 100000", send=lambda: pub["tactile"].publish(huge))
        lacks = "taxel ids the layout lacks (skipped): [60000]"
        wait_for(monitor, "tactile_node", lacks, send=lambda: pub["tactile"].publish(unknown))
        # Then a good joint state places the waiting readings: finite contacts.
        pub["hand_joints"].publish(JointState(header=header(now, ""), name=JOINTS, position=[0.2] * 16))

        # Intrinsics no camera has: fx = fy = 1e30 and 1.
        rgbd_set(now, fx=1e30)
        wait_for(monitor, "rgbd_node", "camera_info is implausible")
        rgbd_set(now + 10**8, fx=1.0)
        wait_for(monitor, "rgbd_node", "field of view")
        # A stamp from the far future (sec = 2^31 - 1) is dropped at the door; the next set passes.
        rgbd_set((2**31 - 1) * 10**9)
        wait_for(monitor, "rgbd_node", "implausible stamp")
        rgbd_set(now + 2 * 10**8)
        deadline = time.monotonic() + 30
        while not bundles and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bundles, sorted(set(monitor.messages_of("rgbd_node")))

        # A zero ground-truth quaternion in a replay: reported, no pose.
        pub["object"].publish(String(data="005_tomato_soup_can"))
        time.sleep(0.5)
        zero = PoseStamped(header=header(now))
        zero.pose.orientation.w = 0.0  # the message's default is the identity
        pub["gt"].publish(zero)
        wait_for(monitor, "estimator_node", "unusable ground truth")

        time.sleep(1.0)
        running = {name: process.poll() is None for name, process in graph.processes.items()}
        initial_poses = [e for e in monitor.snapshot().values() if "T_initial" in e]
        with clouds.lock:
            published = list(clouds.clouds)
        results = graph.stop()
    assert all(running.values()), {n: results[n][2][-2000:] for n, up in running.items() if not up}
    assert published and all(np.isfinite(cloud).all() for cloud in published)
    assert all(np.isfinite(entry["T_initial"]).all() for entry in initial_poses)


@pytest.mark.parametrize("composed", [None, "two"])
def test_a_short_soak_on_a_live_looping_replay_keeps_refining(tmp_path, composed):
    """The robot mode end to end: a 3-frame episode looped and re-stamped (a camera that never
    stops: every loop would otherwise replay the same stamps), best-effort inputs, the latest
    frame only. Refined poses keep coming with advancing stamps, no node dies; the same with the
    nodes composed into two processes (the sensor nodes; estimator and refiner)."""
    from tactile_pose_refiner.io.episode_bag import write_episode
    from tactile_pose_refiner.soak import SoakLimits, run_soak

    import scenes

    bag = tmp_path / "live"
    _, frames = scenes.generator().replay(
        "005_tomato_soup_can", scenes.stored_grasp("005_tomato_soup_can"), steps=3, seed=4
    )
    frames = list(frames)
    write_episode(bag, frames)
    limits = SoakLimits(minutes=1.0, warmup_s=30.0, stall_s=50.0)
    short = {"refiner_node": {"iterations": 30}}  # CI-sized refinements: more poses in the minute
    result = run_soak(
        bag, limits, "ground_truth_noise", log=lambda text: None, parameters=short, composed=composed, rate=0.5
    )
    print("\n" + result.summary(limits))
    assert len(result.rss_mb) == (3 if composed else 6)  # the processes the soak measured, the replay's included
    assert not result.crashed and result.stalls == 0, result.summary(limits)
    assert len(result.stamps) >= 2 and all(b > a for a, b in zip(result.stamps, result.stamps[1:]))
    recorded = [frame.stamp_ns for frame in frames]
    assert min(result.stamps) > max(recorded)  # re-stamped at publication, not the recorded stamps
    assert np.isfinite(result.latencies_ms).all()


SUBSCRIBED_THEN_LOADED = """
import json, sys
import rclpy
from tactile_pose_refiner.nodes import refiner_node

seen = {}
load = refiner_node.RefinerNode._load_refinement

def recording_load(node):
    seen["loaded_before"] = [m for m in ("torch", "open3d", "warp") if m in sys.modules]
    seen["subscribed_before"] = sorted(subscription.topic_name for subscription in node.subscriptions)
    load(node)

refiner_node.RefinerNode._load_refinement = recording_load
rclpy.init(args=["refiner_node"])
node = refiner_node.RefinerNode()
seen["hand_joints"] = len(node.hand.model.joint_names)
node.destroy_node()
rclpy.shutdown()
print(json.dumps(seen))
"""


def test_a_refiner_subscribes_before_it_loads_torch_open3d_and_warp(ros_env):
    """A restarted refiner's DDS discovery and first inputs overlap its ~3 s of imports: its
    inputs are subscribed while none of torch, Open3D and Warp is loaded yet."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SUBSCRIBED_THEN_LOADED], env=ros_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["loaded_before"] == []
    for topic in ("/estimator/initial_pose", "/rgbd/bundle", "/tactile/array", "/hand/joint_states"):
        assert topic in seen["subscribed_before"], seen["subscribed_before"]
    assert seen["hand_joints"] == 16  # and then the node loads and builds its hand


# One restart in six at 30 Hz here received nothing for 120 s: Fast DDS's shared-memory transport
# after a SIGKILL (eProsima/Fast-DDS#5469, #2811); one rerun keeps CI from failing on it.
@pytest.mark.flaky(reruns=1)
def test_a_refiner_killed_and_restarted_publishes_again_within_seconds(tmp_path, ros_env):
    """SIGKILL of refiner_node on a live feed, then a new one: refined poses resume without a
    restart of the other nodes, and every node stops cleanly on SIGINT (exit code 0)."""
    from tactile_pose_refiner.graph import REFINER_NODES
    from tactile_pose_refiner.io.episode_bag import write_episode
    from tactile_pose_refiner.soak import PoseTimer, restart_after_kill, soak_graph

    import scenes

    bag = tmp_path / "live"
    _, frames = scenes.generator().replay(
        "005_tomato_soup_can", scenes.stored_grasp("005_tomato_soup_can"), steps=3, seed=4
    )
    write_episode(bag, list(frames))
    # a 7.5 Hz feed: on a loaded 2-core CI machine rgbd_node keeps up with every frame, so each
    # initial pose (made from the ground truth, not from a bundle) has its bundle
    nodes = soak_graph(bag, "ground_truth_noise", {"refiner_node": {"iterations": 30}}, rate=0.25)
    with RunningGraph(ros_env) as graph, GraphMonitor(int(ros_env["ROS_DOMAIN_ID"])) as monitor:
        poses = PoseTimer(monitor)
        player = nodes.pop("bag_replay_node")
        for name, node in nodes.items():
            graph.start(name, node)
        assert not monitor.wait_for_nodes(list(REFINER_NODES), 120)
        graph.start("bag_replay_node", player)
        deadline = time.monotonic() + 120
        while poses.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert poses.count() > 0, sorted(set(monitor.messages_of("refiner_node")))
        resumed_s, resumed = restart_after_kill(graph, poses, "refiner_node", nodes["refiner_node"], 120.0)
        others_alive = all(p.poll() is None for name, p in graph.processes.items())
        said = sorted(set(monitor.messages_of("refiner_node")))
        results = graph.stop()
    print(f"\nrefined poses resumed {resumed_s:.1f} s after the restart")
    assert others_alive and resumed, (
        said,
        results["refiner_node"][2][-3000:],
    )
    assert resumed_s < 10.0  # the target: 3.9 s here at this 7.5 Hz feed, 3.8-9.7 s at 30 Hz (was 6.8 s, 8-13 s)
    # SIGINT: every node exits 0 (a refiner mid-refinement used to end in SIGABRT, and a SIGINT
    # inside rclpy's message conversion in exit code 1: test_node_exit.py)
    assert all(code == 0 for code, _, _ in results.values()), {
        n: (r[0], r[2][-1500:]) for n, r in results.items() if r[0]
    }
