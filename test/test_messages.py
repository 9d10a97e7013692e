"""The custom messages: content of SPEC §3, conversions, and wire compatibility with rosbags."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from tactile_pose_refiner.core.scene.skin import TactileInputError, TactileReading
from tactile_pose_refiner.msg import RefinementDiagnostics, TactileArray
from tactile_pose_refiner.nodes.conversions import message_class, message_to_dict, tactile_from_msg, tactile_to_msg

from conftest import REPO


def make_reading(count: int = 4) -> TactileReading:
    rng = np.random.default_rng(7)
    return TactileReading(
        link_names=tuple(f"link_{i % 4}3" for i in range(count)),
        taxel_ids=np.arange(100, 100 + count),
        positions=rng.uniform(-0.02, 0.02, (count, 3)),
        forces=rng.uniform(0, 10000, (count, 3)),
        force_scale=0.002,
        stamp_ns=1_700_000_000_123_456_789,
    )


def test_tactile_array_has_the_spec_content():
    fields = TactileArray.get_fields_and_field_types()
    assert fields == {
        "header": "std_msgs/Header",
        "link_names": "sequence<string>",
        "taxel_ids": "sequence<uint16>",
        "positions": "sequence<geometry_msgs/Point>",
        "forces": "sequence<geometry_msgs/Vector3>",
        "force_scale": "float",
    }


def test_refinement_diagnostics_has_the_spec_content():
    fields = RefinementDiagnostics.get_fields_and_field_types()
    assert fields["source_names"] == "sequence<string>"
    assert fields["source_losses"] == fields["source_weights"] == "sequence<float>"
    for source in ("physics", "render", "depth", "tactile"):  # deprecated, kept one release
        assert fields[f"loss_{source}"] == "float" and fields[f"weight_{source}"] == "float"
    for name in (
        "header",
        "object_id",
        "iterations",
        "checkpoint_iteration",
        "intersection_volume_before_cm3",
        "intersection_volume_after_cm3",
        "contact_area_before_cm2",
        "contact_area_after_cm2",
        "penetration_depth_max_after_mm",
        "wall_time_ms",
        "device",
        "status",
    ):
        assert name in fields, name


def test_tactile_reading_round_trips_through_the_message_and_the_wire():
    reading = make_reading()
    msg = deserialize_message(serialize_message(tactile_to_msg(reading, "base_link")), TactileArray)
    back = tactile_from_msg(msg)
    assert back.link_names == reading.link_names
    np.testing.assert_array_equal(back.taxel_ids, reading.taxel_ids)
    np.testing.assert_array_equal(back.positions, reading.positions)
    np.testing.assert_array_equal(back.forces, reading.forces)
    assert back.stamp_ns == reading.stamp_ns and back.force_scale == pytest.approx(0.002)
    assert message_to_dict(msg)["header"]["frame_id"] == "base_link"


def test_rosbags_reads_what_rclpy_writes():
    """Episodes are written with rosbags; its CDR and type hash must match rclpy's."""
    store = get_typestore(Stores.ROS2_KILTED)
    for name in ("TactileArray", "RefinementDiagnostics"):
        text = (REPO / "msg" / f"{name}.msg").read_text()
        store.register(get_types_from_msg(text, f"tactile_pose_refiner/msg/{name}"))
    msg = tactile_to_msg(make_reading(), "base_link")
    decoded = store.deserialize_cdr(serialize_message(msg), "tactile_pose_refiner/msg/TactileArray")
    assert list(decoded.link_names) == list(msg.link_names)
    np.testing.assert_array_equal(decoded.taxel_ids, msg.taxel_ids)
    assert decoded.forces[2].z == msg.forces[2].z
    assert decoded.header.stamp.nanosec == 123_456_789
    diagnostics = RefinementDiagnostics(
        object_id="006_mustard_bottle", status="ok", checkpoint_iteration=-1, wall_time_ms=12.5
    )
    decoded = store.deserialize_cdr(serialize_message(diagnostics), "tactile_pose_refiner/msg/RefinementDiagnostics")
    assert decoded.object_id == "006_mustard_bottle" and decoded.checkpoint_iteration == -1


@pytest.mark.parametrize(
    "change, complaint",
    [
        (dict(forces=np.zeros((3, 3))), "forces has 3 entries"),
        (dict(positions=np.full((4, 3), np.nan)), "positions contain NaN"),
        (dict(forces=np.full((4, 3), np.inf)), "forces contain NaN or inf"),
        (dict(taxel_ids=np.array([0, 1, 2, 70000])), "uint16"),
        (dict(force_scale=-1.0), "force_scale"),
    ],
)
def test_malformed_tactile_readings_are_rejected_with_the_reason(change, complaint):
    good = make_reading()
    fields = dict(
        link_names=good.link_names,
        taxel_ids=good.taxel_ids,
        positions=good.positions,
        forces=good.forces,
        force_scale=good.force_scale,
    )
    with pytest.raises(TactileInputError, match=complaint):
        TactileReading(**{**fields, **change})


def test_message_class_resolves_type_names_and_rejects_unknown_ones():
    assert message_class("tactile_pose_refiner/msg/TactileArray") is TactileArray
    assert message_class("tactile_pose_refiner/TactileArray") is TactileArray
    with pytest.raises(ValueError, match="unknown message type"):
        message_class("tactile_pose_refiner/msg/NoSuchThing")


@pytest.mark.parametrize("sec, nanosec", [(1_796_000_123, 999_999_999), (0, 1), (2**31 - 1, 0)])
def test_a_raw_bundle_gives_its_stamp_without_being_deserialised(sec, nanosec):
    """FrameInputs keeps bundles and tactile arrays as the bytes DDS delivered (raw
    subscriptions); the stamp read from those bytes must be the message's own."""
    from tactile_pose_refiner.msg import RgbdBundle
    from tactile_pose_refiner.nodes.conversions import LazyMessage, cdr_header_stamp_ns

    bundle = RgbdBundle()
    bundle.header.stamp.sec, bundle.header.stamp.nanosec = sec, nanosec
    bundle.header.frame_id = "camera_color_optical_frame"
    bundle.status = "ok"
    data = serialize_message(bundle)
    assert cdr_header_stamp_ns(data) == sec * 1_000_000_000 + nanosec
    lazy = LazyMessage(data, RgbdBundle)
    assert lazy.stamp_ns == sec * 1_000_000_000 + nanosec and lazy._message is None  # not deserialised yet
    assert lazy.message().status == "ok" and lazy.message().header.frame_id == "camera_color_optical_frame"
    reading = tactile_to_msg(TactileReading(("link_3.0",), np.array([7]), np.zeros((1, 3)), np.ones((1, 3)), 0.0, 5))
    reading.header.stamp.sec, reading.header.stamp.nanosec = sec, nanosec
    assert LazyMessage(serialize_message(reading), TactileArray).stamp_ns == sec * 1_000_000_000 + nanosec
    assert cdr_header_stamp_ns(b"\x00\x07" + bytes(10)) is None  # another encoding: deserialised instead
