"""bag_replay_node: plays a rosbag2 episode (mcap or sqlite3) through the node graph.

What `ros2 bag play` does (ros2cli and rosbag2_py are not installable here): the recorded
messages are published as their raw CDR bytes (the `rosbags` library reads them; no per-field
conversion) on their recorded topics, at the recorded pace scaled by `rate`, optionally in a
loop, with /clock at the recorded time. With `restamp` it behaves like a live camera instead:
every header stamp is moved to the time of publication (the recorded spacing kept, loop after
loop), and no /clock is published. It can wait until every topic has a subscriber (the
first messages would be lost to discovery otherwise). Progress goes to the log and to
/diagnostics; the process exits 0 after the last message (and `linger_s`), 2 on a bad bag.
"""

from __future__ import annotations

import time
from pathlib import Path

from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock

from tactile_pose_refiner.nodes.common import OUTPUT_QOS, GraphNode, run_node
from tactile_pose_refiner.nodes.conversions import message_class, ns_to_stamp, stamp_ns

PARAMETERS = {
    "bag": ("", "rosbag2 directory (with metadata.yaml) to play"),
    "rate": (1.0, "playback speed factor (0.5: half the recorded pace)"),
    "loop": (False, "start again after the last message"),
    "publish_clock": (True, "publish /clock at the recorded time (not with restamp)"),
    "restamp": (False, "stamp each message with its publication time, keeping the recorded spacing: a live feed"),
    "reliable": (True, "reliable transient-local publishers (SensorDataQoS subscribers match too)"),
    "wait_for_subscribers_s": (0.0, "wait up to this long until the wait_topics have subscribers"),
    "wait_topics": (
        "",
        "comma-separated topics that must have a subscriber before playing (the "
        "bag's own: matched; any other: seen in the graph); empty: the bag's",
    ),
    "start_delay_s": (0.0, "extra wait once the subscribers are there, for the graph to match [s]"),
    "linger_s": (
        5.0,
        "stay up this long after the last message: a reliable writer repairs losses "
        "on its heartbeat (every 3 s in Fast DDS) and serves late readers [s]",
    ),
}


class BagReplayNode(GraphNode):
    def __init__(self) -> None:
        super().__init__("bag_replay_node", PARAMETERS)
        try:
            if self.params["rate"] <= 0:
                raise ValueError(f"rate must be > 0, got {self.params['rate']}")
            self.reader = self._open(Path(self.params["bag"]))
        except Exception as exc:  # noqa: BLE001 - rosbags raises many types on bad bags
            self.get_logger().fatal(f"cannot play bag: {exc}")
            self.finish(2)
            return
        self.publishers_by_topic = self._create_publishers()
        clock = self.params["publish_clock"] and not self.params["restamp"]
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if clock else None
        named = [t.strip() for t in self.params["wait_topics"].split(",") if t.strip()]
        self.wait_for = named or list(self.publishers_by_topic)
        self.total = self.reader.message_count
        self.created = time.monotonic()
        self.subscribed_at: float | None = None
        self.started: float | None = None
        self.finished: float | None = None
        self.published = 0
        self.loops = 0
        self.timer = self.create_timer(0.002, self.tick)
        self.get_logger().info(
            f"playing {self.params['bag']}: {self.total} messages on "
            f"{len(self.publishers_by_topic)} topics at rate {self.params['rate']}"
        )

    @staticmethod
    def _open(path: Path) -> Reader:
        if not (path / "metadata.yaml").is_file():
            raise ValueError(f"not a rosbag2 directory (no metadata.yaml): '{path}'")
        reader = Reader(path)
        reader.open()
        return reader

    def _create_publishers(self) -> dict:
        qos = OUTPUT_QOS if self.params["reliable"] else qos_profile_sensor_data
        publishers, self.types_by_topic = {}, {}
        for connection in self.reader.connections:
            try:
                msg_type = message_class(connection.msgtype)
            except ValueError as exc:
                self.diagnostics.report("warn", f"topic skipped: {connection.topic}: {exc}")
                continue
            publishers[connection.topic] = self.create_publisher(msg_type, connection.topic, qos)
            self.types_by_topic[connection.topic] = msg_type
        return publishers

    def tick(self) -> None:
        now = time.monotonic()
        if self.finished is not None:
            if now - self.finished >= self.params["linger_s"]:
                self.finish(0)
            return
        if self.started is None:
            if not self._ready(now):
                return
            self._restart(now)
        while self.pending is not None:
            connection, timestamp, raw = self.pending
            if self.first_stamp is None:
                self.first_stamp = timestamp
            due = self.started + (timestamp - self.first_stamp) / 1e9 / self.params["rate"]
            if due > now:
                return
            self.publishers_by_topic[connection.topic].publish(self._outgoing(connection, timestamp, raw))
            if self.clock_pub is not None:
                self.clock_pub.publish(Clock(clock=ns_to_stamp(timestamp)))
            self.published += 1
            self._report_progress()
            self.pending = next(self.messages, None)
        if self.params["loop"]:
            self.loops += 1
            self._restart(now)
        else:
            self.finished = now
            self.get_logger().info(f"replay done: {self.published} messages")
            self.diagnostics.report("ok", "replay done", published=self.published)

    def _outgoing(self, connection, timestamp: int, raw: bytes):
        """The recorded bytes, or with restamp the message with its header stamp moved by the
        offset of this loop's start (a zero stamp, a headerless source's, stays zero)."""
        if not self.params["restamp"]:
            return raw
        if self.stamp_offset is None:
            self.stamp_offset = self.get_clock().now().nanoseconds - timestamp
        msg = deserialize_message(raw, self.types_by_topic[connection.topic])
        header = getattr(msg, "header", None)
        if header is not None and stamp_ns(header.stamp) != 0:
            header.stamp = ns_to_stamp(stamp_ns(header.stamp) + self.stamp_offset)
        return msg

    def _ready(self, now: float) -> bool:
        if self.subscribed_at is None:
            waiting = now - self.created < self.params["wait_for_subscribers_s"]
            if waiting and not all(self._has_subscriber(topic) for topic in self.wait_for):
                return False
            self.subscribed_at = now
        return now - self.subscribed_at >= self.params["start_delay_s"]

    def _has_subscriber(self, topic: str) -> bool:
        if topic in self.publishers_by_topic:  # matched to our publisher: delivery will work
            return self.publishers_by_topic[topic].get_subscription_count() > 0
        return self.count_subscribers(topic) > 0  # a downstream topic of the graph

    def _restart(self, now: float) -> None:
        connections = [c for c in self.reader.connections if c.topic in self.publishers_by_topic]
        self.messages = self.reader.messages(connections=connections)
        self.pending = next(self.messages, None)
        self.first_stamp = None
        self.stamp_offset = None  # restamp: set by the loop's first message
        self.started = now

    def _report_progress(self) -> None:
        step = max(1, self.total // 10)
        if self.published % step == 0 or self.published == self.total:
            done = self.published - self.loops * self.total
            self.get_logger().info(f"replay {done}/{self.total} messages (loop {self.loops})")
            self.diagnostics.report("ok", "replaying", published=self.published, of=self.total, loop=self.loops)

    def destroy_node(self) -> None:
        if getattr(self, "reader", None) is not None:
            self.reader.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(BagReplayNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
