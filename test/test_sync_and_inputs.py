"""The ROS-free pieces under the nodes: time synchronisation, image decoding, the Xela
vendor stream converter."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tactile_pose_refiner.core.images import ImageInputError, decode_color, decode_depth_mm, decode_mask
from tactile_pose_refiner.core.scene.skin import SkinLayout, TactileInputError
from tactile_pose_refiner.core.scene.xela import XelaStreamConverter
from tactile_pose_refiner.core.sync import ApproximateSync, StampedBuffer

MS = 1_000_000


def test_approximate_sync_pairs_within_slop_and_uses_each_message_once():
    sets = []
    sync = ApproximateSync(2, queue_size=10, slop_s=0.005, callback=lambda a, b: sets.append((a, b)))
    for stamp in (0, 33, 66, 100):  # camera at 30 Hz
        sync.add(0, stamp * MS, f"c{stamp}")
    for stamp in (2, 20, 35, 90, 101):  # depth with jitter; 20 and 90 have no partner
        sync.add(1, stamp * MS, f"d{stamp}")
    assert sets == [("c0", "d2"), ("c33", "d35"), ("c100", "d101")]
    sync.add(0, 50 * MS, "late")  # older than the newest colour: dropped
    assert len(sets) == 3 and all(len(queue) == 0 for queue in sync.queues)


def test_approximate_sync_bounds_its_queues():
    sync = ApproximateSync(2, queue_size=3, slop_s=0.001, callback=lambda *a: None)
    for k in range(10):
        sync.add(0, k * 100 * MS, k)  # the other stream never publishes
    assert len(sync.queues[0]) == 3


def test_stamped_buffer_nearest_within_tolerance():
    buffer = StampedBuffer(3)
    for stamp in (0, 10, 20, 30):
        buffer.add(stamp * MS, stamp)
    assert buffer.nearest(12 * MS, 0.005) == (10, pytest.approx(0.002))
    assert buffer.nearest(0, 0.005) is None  # evicted (capacity 3)
    assert buffer.nearest(45 * MS, 0.005) is None
    assert buffer.take_near(21 * MS, 0.002) == [20] and len(buffer) == 2


def test_approximate_sync_resumes_after_time_jumps_back_as_a_looping_bag_does():
    """A replay that loops publishes its recorded stamps again: without clearing, every set of the
    second pass is older than the newest seen and none pairs again (the robot-mode stall)."""
    sets, jumps = [], []
    sync = ApproximateSync(2, 10, 0.01, lambda a, b: sets.append((a, b)), jumps.append)
    second = 1_000_000_000
    for loop in range(3):
        for k in range(10):
            stamp = 100 * second + k * second // 30
            sync.add(0, stamp, f"rgb{loop}.{k}")
            sync.add(1, stamp, f"depth{loop}.{k}")
    assert len(sets) == 30 and sets[-1] == ("rgb2.9", "depth2.9")
    assert len(jumps) == 2 and all(0.25 < j < 0.35 for j in jumps)


def test_one_stamp_from_the_far_future_does_not_block_the_stream():
    sets = []
    sync = ApproximateSync(2, 10, 0.01, lambda a, b: sets.append(a))
    far = (2**31 - 1) * 1_000_000_000
    sync.add(0, far, "future")
    for k in range(3):
        stamp = 1_700_000_000_000_000_000 + k * 33_000_000
        sync.add(0, stamp, k)
        sync.add(1, stamp, k)
    assert sets == [0, 1, 2]


def test_stamped_buffer_clears_on_a_jump_back_and_says_how_far():
    buffer = StampedBuffer(10)
    assert buffer.add(5_000_000_000, "a") is None
    assert buffer.add(4_950_000_000, "late") is None  # disorder within 0.1 s: kept
    assert buffer.add(1_000_000_000, "rewound") == pytest.approx(4.0)
    assert len(buffer) == 1 and buffer.nearest(1_000_000_000, 0.01) == ("rewound", 0.0)


def test_depth_in_metres_with_nan_becomes_invalid_millimetres():
    depth = np.array([[0.5, np.nan], [-1.0, np.inf]], dtype=np.float32)
    mm = decode_depth_mm("32FC1", 2, 2, 8, depth.tobytes())
    assert mm.dtype == np.uint16 and mm.tolist() == [[500, 0], [0, 0]]
    raw = np.array([[700, 0], [1, 2]], dtype=np.uint16)
    padded = np.zeros((2, 6), np.uint8)  # rows padded to 6 bytes
    padded[:, :4] = raw.view(np.uint8).reshape(2, 4)
    assert decode_depth_mm("16UC1", 2, 2, 6, padded.tobytes()).tolist() == raw.tolist()


def test_colour_orders_and_bad_images_raise_clear_errors():
    bgr = np.array([[[1, 2, 3]]], dtype=np.uint8)
    assert decode_color("bgr8", 1, 1, 3, bgr.tobytes()).tolist() == [[[3, 2, 1]]]
    assert decode_mask("mono8", 1, 2, 2, b"\x00\xff").tolist() == [[0, 255]]
    with pytest.raises(ImageInputError, match="colour encoding 'rgb16'"):
        decode_color("rgb16", 1, 1, 6, bytes(6))
    with pytest.raises(ImageInputError, match="depth encoding '8UC1'"):
        decode_depth_mm("8UC1", 1, 1, 1, bytes(1))
    with pytest.raises(ImageInputError, match="do not hold its rows"):
        decode_color("rgb8", 480, 640, 1920, bytes(100))


def test_xela_stream_becomes_a_stamped_reading_against_the_layout():
    layout = SkinLayout.from_config()
    converter = XelaStreamConverter(layout)
    taxel = lambda x, y, z: SimpleNamespace(x=x, y=y, z=z)  # noqa: E731
    rest = SimpleNamespace(sensor_pos=2, time=0.0, taxels=[taxel(100, 100, 1000)] * 24)
    converter.convert([rest], fallback_stamp_ns=5)  # the zero-load baseline
    pressed = SimpleNamespace(
        sensor_pos=2, time=1700000000.5, taxels=[taxel(100, 100, 1000)] * 23 + [taxel(110, 90, 1600)]
    )
    reading = converter.convert([pressed], fallback_stamp_ns=5)
    second_patch = list(dict.fromkeys(layout.patches))[1]
    first_id = int(layout.ids[layout.patches.index(second_patch)])
    assert reading.taxel_ids.tolist() == list(range(first_id, first_id + 24))
    assert reading.forces[-1].tolist() == [10, -10, 600] and not reading.forces[:-1].any()
    assert reading.stamp_ns == 1_700_000_000_500_000_000
    assert reading.link_names[0] == layout.links[layout.patches.index(second_patch)]
    with pytest.raises(TactileInputError, match="sensor_pos 99"):
        converter.convert([SimpleNamespace(sensor_pos=99, time=0.0, taxels=[])], 0)


def test_a_frame_waits_for_its_own_touch_rather_than_the_previous_frames():
    """The previous frame's message (33 ms earlier) is within the 50 ms tolerance too; taking it
    because it came first paired a replayed frame with a stale hand and touch, and its
    refinement went 1.5 cm the wrong way. The frame's own message, arriving 0.2 s later, wins;
    without one, the nearest within tolerance is taken at the deadline."""
    import threading
    import time

    from tactile_pose_refiner.nodes.frame_inputs import FrameInputs

    buffer = StampedBuffer(10)
    buffer.add(0, "frame 0")
    threading.Timer(0.2, buffer.add, (33 * MS, "frame 1")).start()
    assert FrameInputs._wait_for(buffer, 33 * MS, 0.05, time.monotonic() + 2.0)[0] == "frame 1"
    started = time.monotonic()
    assert FrameInputs._wait_for(buffer, 66 * MS, 0.05, started + 0.3)[0] == "frame 1"
    assert time.monotonic() - started >= 0.3


def test_work_queue_stop_waits_for_its_worker_and_drops_what_is_left():
    import threading

    from tactile_pose_refiner.nodes.frame_inputs import WorkQueue

    reports, handled, started, release = [], [], threading.Event(), threading.Event()

    def handle(request):
        started.set()
        release.wait(5.0)
        handled.append(request)

    node = SimpleNamespace(
        get_name=lambda: "queue_test", diagnostics=SimpleNamespace(report=lambda *args: reports.append(args))
    )
    queue = WorkQueue(node, handle, size=0)
    queue.put("first")
    queue.put("second")
    assert started.wait(5.0)
    threading.Timer(0.2, release.set).start()
    queue.stop(timeout_s=5.0)  # the running request finishes; the waiting one is dropped
    assert not queue.worker.is_alive() and handled == ["first"] and reports == []


@pytest.mark.parametrize("quaternion", [(0.0, 0.0, 0.0, 0.0), (np.nan, 0.0, 0.0, 1.0)])
def test_an_unusable_quaternion_gives_a_nan_pose_not_an_exception(quaternion):
    """estimator_node exited on a zero ground-truth quaternion (scipy: 'zero norm quaternions')
    and, restarted, met the stored message again; a NaN pose is labelled by every caller."""
    from tactile_pose_refiner.core.geometry import pose_fields_to_matrix

    x, y, z, w = quaternion
    pose = SimpleNamespace(
        position=SimpleNamespace(x=0.1, y=0.0, z=0.5), orientation=SimpleNamespace(x=x, y=y, z=z, w=w)
    )
    assert np.isnan(pose_fields_to_matrix(pose)).all()


class TfStandIn:
    """tf2_ros.Buffer's lookup_transform over a dict (tf2_ros has no wheel here): transforms it
    holds by stamp; LookupError otherwise."""

    def __init__(self, held: dict) -> None:
        self.held = held

    def lookup_transform(self, target: str, source: str, time):
        from geometry_msgs.msg import TransformStamped

        key = (target, source, time.nanoseconds)
        if key not in self.held:
            raise LookupError(f"{source} -> {target} at {time.nanoseconds}")
        message = TransformStamped()
        (message.transform.translation.x, message.transform.translation.y, message.transform.translation.z) = self.held[
            key
        ][0]
        rotation = message.transform.rotation
        rotation.x, rotation.y, rotation.z, rotation.w = self.held[key][1]
        return message


def test_the_hand_base_pose_comes_from_tf_where_it_holds_it_else_from_the_topic():
    import time

    import rclpy
    from geometry_msgs.msg import PoseStamped

    from tactile_pose_refiner.nodes.common import input_qos
    from tactile_pose_refiner.nodes.conversions import ns_to_stamp
    from tactile_pose_refiner.nodes.frame_inputs import FrameInputs
    from tactile_pose_refiner.nodes.tf_hand_pose import TfHandPose

    held = {
        ("camera", "ah_base_link", 10 * MS): ((0.1, 0.0, 0.5), (0.0, 0.0, 0.0, 1.0)),
        ("camera", "ah_base_link", 20 * MS): ((0.1, 0.0, 0.5), (0.0, 0.0, 0.0, 0.0)),  # zero quaternion
    }
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("tf_hand_pose_test", context=context)
        tf = TfHandPose(TfStandIn(held), "ah_base_link", (LookupError,))
        inputs = FrameInputs(node, input_qos(reliable=True), tf_hand=tf)
        for stamp in (10 * MS, 20 * MS, 30 * MS):
            topic_pose = PoseStamped()
            topic_pose.header.stamp = ns_to_stamp(stamp)
            topic_pose.pose.position.z, topic_pose.pose.orientation.w = 0.7, 1.0
            inputs.hand_poses.add(stamp, topic_pose)
        from_tf = inputs.hand_pose_at(10 * MS, "camera", 0.005)
        assert np.allclose(from_tf[:3, 3], [0.1, 0.0, 0.5])  # TF first
        assert np.allclose(inputs.hand_pose_at(20 * MS, "camera", 0.005)[:3, 3], [0, 0, 0.7])  # unusable in TF
        assert np.allclose(inputs.hand_pose_at(30 * MS, "camera", 0.005)[:3, 3], [0, 0, 0.7])  # not in TF
        started = time.monotonic()
        assert inputs._hand_pose(90 * MS, "camera", 0.005, started + 0.2) is None  # neither: None at the deadline
        assert time.monotonic() - started < 1.0
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_inputs_that_went_past_a_frame_are_missed_not_absent():
    """A restarted refiner skips a frame whose touch was sent before it listened (a newer frame has
    it), but not one whose camera never comes (camera off: touch-only refinement)."""
    from tactile_pose_refiner.nodes.frame_inputs import FrameInputs

    inputs = FrameInputs.__new__(FrameInputs)  # the buffers only: no node, no subscriptions
    inputs.bundles, inputs.tactile = StampedBuffer(30), StampedBuffer(300)
    inputs.joints, inputs.hand_poses = StampedBuffer(300), StampedBuffer(300)
    frame, later = 10_000_000_000, 10_500_000_000
    assert not inputs.missed(frame, 0.05)  # nothing came yet: the camera (or touch) may be off
    inputs.tactile.add(later, "touch of a later frame")
    assert inputs.missed(frame, 0.05)  # the frame's own touch came before the subscription
    inputs.tactile.add(frame, "the frame's touch")
    assert not inputs.missed(frame, 0.05)


def test_a_resting_estimator_takes_no_inputs_and_takes_them_again_when_asked(ros_env):
    """While a tracking refiner's track holds (refiner/needs_estimate False) the estimator drops
    its input subscriptions (at 30 Hz they cost it ~11 % of a core for nothing, measured by
    `tpr soak --track`: 11 % -> 0 %); asked again, it subscribes again."""
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Bool

    from tactile_pose_refiner.nodes.common import LATCHED
    from tactile_pose_refiner.nodes.estimator_node import EstimatorNode

    def topics(node) -> set[str]:
        return {subscription.topic_name for subscription in node.subscriptions}

    def spin_until(executor, condition, seconds=5.0) -> bool:
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        return condition()

    rclpy.init(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        estimator, refiner = EstimatorNode(), rclpy.create_node("refiner_stand_in")
        executor = SingleThreadedExecutor()
        executor.add_node(estimator)
        executor.add_node(refiner)
        needs_estimate = refiner.create_publisher(Bool, "refiner/needs_estimate", LATCHED)
        inputs = {"/rgbd/bundle", "/tactile/array", "/hand/joint_states"}
        assert inputs <= topics(estimator)
        needs_estimate.publish(Bool(data=False))
        assert spin_until(executor, lambda: not inputs & topics(estimator)), topics(estimator)
        assert "/refiner/needs_estimate" in topics(estimator)  # still listening for the next request
        needs_estimate.publish(Bool(data=True))
        assert spin_until(executor, lambda: inputs <= topics(estimator)), topics(estimator)
        executor.shutdown()
        estimator.destroy_node()
        refiner.destroy_node()
    finally:
        rclpy.shutdown()
