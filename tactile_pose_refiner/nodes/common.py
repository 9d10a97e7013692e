"""Shared plumbing of the nodes: parameter declaration and the spin/shutdown lifecycle."""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future

from tactile_pose_refiner.core.resources import ResourceError, load_config
from tactile_pose_refiner.core.sync import ApproximateSync
from tactile_pose_refiner.nodes.conversions import stamp_ns

# name -> (default, description); the defaults match the node's section in config/*.yaml
# (test_config_matches_node_parameters checks that).
ParameterSpec = Mapping[str, tuple[Any, str]]


def declare_parameters(node: Node, spec: ParameterSpec) -> dict[str, Any]:
    """Declare every parameter of `spec` with its description; return the current values."""
    for name, (default, description) in spec.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description))
    return {name: node.get_parameter(name).value for name in spec}


class ParameterError(ValueError):
    """A node parameter's value cannot work; the message names it and what it may be."""


class StoppableNode(Node):
    """A node that may finish by itself: it sets `done` with an exit code."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.done = Future()

    def finish(self, exit_code: int) -> None:
        if not self.done.done():
            self.done.set_result(exit_code)


def run_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Init rclpy, spin the node until Ctrl-C / shutdown (or until it finishes), clean up.

    Returns the process exit code. `args` defaults to sys.argv so `--ros-args` apply.
    """
    watch_signals()
    rclpy.init(args=sys.argv if args is None else args)
    node = None
    try:
        node = make_node()
        if isinstance(node, StoppableNode):
            rclpy.spin_until_future_complete(node, node.done)
            return int(node.done.result()) if node.done.done() else 0
        rclpy.spin(node)
        return 0
    except BaseException as exc:
        code = exit_code_for(exc)
        if code is None:
            raise
        return code
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


_SIGINT_CAME = threading.Event()


def _remember_sigint(signum, frame) -> None:
    _SIGINT_CAME.set()
    raise KeyboardInterrupt


def watch_signals() -> None:
    """Call before rclpy.init, whose SIGINT handler calls this one after its own: SIGINT is
    remembered, then raised as usual. SIGUSR1 writes every thread's Python stack to stderr
    (RunningGraph asks a node that does not stop where it hangs)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _remember_sigint)
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code of a node process that `exc` ends; None: a failure, to be raised."""
    if isinstance(exc, (KeyboardInterrupt, ExternalShutdownException)):
        return 0
    if isinstance(exc, (ResourceError, ParameterError)):  # a broken config file or parameter: stop before any input
        print(f"[ERROR] {exc}", file=sys.stderr, flush=True)
        return 2
    if isinstance(exc, (RuntimeError, TypeError)) and stopping():
        return 0
    return None


def stopping() -> bool:
    """SIGINT came or the context is shut down: an exception now is the stop, not a failure.
    rclpy shuts its context down a moment after the KeyboardInterrupt, and a KeyboardInterrupt
    inside rclpy's message conversion surfaces as pybind11's RuntimeError or TypeError
    ("Unable to convert ...")."""
    return _SIGINT_CAME.is_set() or not rclpy.ok()


# A stamp this far ahead of the node's clock is a broken sender, not clock skew between machines.
FUTURE_LIMIT_S = 60.0


# --- diagnostics ----------------------------------------------------------------------------
LEVELS = {
    "ok": DiagnosticStatus.OK,
    "warn": DiagnosticStatus.WARN,
    "error": DiagnosticStatus.ERROR,
    "stale": DiagnosticStatus.STALE,
}


class DiagnosticsReporter:
    """The node's status on /diagnostics (diagnostic_msgs/DiagnosticArray, reliable).

    `report(level, message, **values)` publishes a problem at once (and counts it by its
    prefix, the text before ':'), an "ok" when it changes; the last status is repeated every
    `period_s` so a monitor that starts later sees it, with the counts as key-values. The same
    problem again within `period_s` is only counted, and a severity is logged at most every
    LOG_EVERY_S: at camera rate (a busy refiner dropping 30 initial poses a second) logging and
    publishing each one took ~6 % of a restarted refiner's CPU samples.
    """

    LOG_EVERY_S = 2.0

    def __init__(self, node: Node, period_s: float = 1.0) -> None:
        self.node = node
        self.name = f"tactile_pose_refiner/{node.get_name()}"
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.problems: Counter[str] = Counter()
        self.last = ("ok", "started", {})
        self.period_s = period_s
        self.published_at = -float("inf")  # time.monotonic() of the last publication
        self.logged_at: dict[str, float] = {}  # per severity: rclpy's own throttle costs a stack walk per call
        self.timer = node.create_timer(period_s, self._publish)

    def report(self, level: str, message: str, **values: Any) -> None:
        changed = (level, message) != self.last[:2]
        self.last = (level, message, values)
        if level != "ok":
            self.problems[message.split(":")[0]] += 1
            self._log(level, message)
        # an unchanged "ok" waits for the periodic repeat; an unchanged problem too, within the period
        if changed or (level != "ok" and time.monotonic() - self.published_at >= self.period_s):
            self._publish()

    def _log(self, level: str, message: str) -> None:
        now = time.monotonic()
        if now - self.logged_at.get(level, -float("inf")) < self.LOG_EVERY_S:
            return
        self.logged_at[level] = now
        if level == "error":
            self.node.get_logger().error(message)
        else:
            self.node.get_logger().warning(message)

    def _publish(self) -> None:
        level, message, values = self.last
        status = DiagnosticStatus(
            level=LEVELS[level], name=self.name, message=message, hardware_id=self.node.get_fully_qualified_name()
        )
        items = {**values, **{f"count {kind}": n for kind, n in self.problems.items()}}
        status.values = [KeyValue(key=str(key), value=str(value)) for key, value in items.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.publisher.publish(array)
        self.published_at = time.monotonic()


RELIABLE_INPUTS = {
    "reliable_inputs": (
        False,
        "subscribe sensor topics reliably (replay: every frame) instead of SensorDataQoS best effort (robot: latest)",
    )
}


def input_qos(reliable: bool) -> QoSProfile:
    """QoS of the sensor subscriptions: SensorDataQoS (a robot's drivers publish best effort),
    or for replays reliable + transient local: a reader whose endpoint matching completes a
    little after the first messages were sent still gets them (measured: a volatile reliable
    reader on a busy 2-core machine lost the first frames of an episode)."""
    if not reliable:
        return qos_profile_sensor_data
    return QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def internal_qos(inputs: QoSProfile) -> QoSProfile:
    """QoS of the graph's own topics (rgbd/bundle, tactile/array, hand/joint_states): reliable even
    where the sensor inputs are best effort, since a 1.8 MB bundle read best effort is lost whole
    when one fragment is, and under load they were, frame after frame."""
    if inputs.reliability == ReliabilityPolicy.RELIABLE:
        return inputs
    return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


# Every publisher of the graph is reliable and transient local: it matches best-effort and
# volatile subscribers (RViz, a robot's consumers) as well as the replay's reliable ones.
OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# The last message only, kept for late subscribers (e.g. who makes the initial poses).
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


SILENCE_WATCHDOG = {
    "silence_s": (
        30.0,
        "inputs arriving but nothing published for this long is reported on /diagnostics, with why [s]; 0: off",
    )
}


class CountedPublisher:
    """A publisher that notes when it last published (rclpy's Publisher takes no attributes)."""

    def __init__(self, publisher, published: Callable[[], None]) -> None:
        self._publisher, self._published = publisher, published

    def publish(self, msg) -> None:
        self._publisher.publish(msg)
        self._published()

    def __getattr__(self, name: str):
        return getattr(self._publisher, name)


# Waits, ages, tolerances and queue lengths the graph's nodes share: a negative one cannot work.
NON_NEGATIVE_PARAMETERS = {
    "silence_s",
    "max_age_s",
    "sync_tolerance_s",
    "joint_tolerance_s",
    "input_wait_s",
    "queue_size",
}


class GraphNode(StoppableNode):
    """A node of the refinement graph: its declared parameters (`params`), the QoS of its
    sensor subscriptions (`inputs`, from reliable_inputs when it has that parameter), its
    /diagnostics reporter and, with `silence_s`, a watchdog: inputs arriving while nothing is
    published for silence_s is a warning on /diagnostics that says why (`silence_reason`)."""

    def __init__(self, name: str, parameters: ParameterSpec) -> None:
        super().__init__(name)
        self.last_input = self.last_output = None  # time.monotonic() of the last message in / out
        self.started = time.monotonic()
        self.silent_reported = False
        self.params = declare_parameters(self, parameters)
        for name in NON_NEGATIVE_PARAMETERS.intersection(self.params):
            if not self.params[name] >= 0:
                raise ParameterError(f"{name} must be 0 or more, got {self.params[name]}")
        self.inputs = input_qos(bool(self.params.get("reliable_inputs", False)))
        self.diagnostics = DiagnosticsReporter(self)
        self.report_unknown_parameters(parameters)
        self.silence_s = float(self.params.get("silence_s", 0.0))
        if self.silence_s > 0:
            self.create_timer(min(1.0, self.silence_s / 2), self.check_silence)

    def create_publisher(self, msg_type, topic, qos_profile, **kwargs):
        """The graph's outputs note when they publish (the watchdog's measure); /diagnostics does not count."""
        publisher = super().create_publisher(msg_type, topic, qos_profile, **kwargs)
        if topic == "/diagnostics":
            return publisher
        return CountedPublisher(publisher, self._published)

    def _published(self) -> None:
        self.last_output = time.monotonic()

    def check_silence(self) -> None:
        """Inputs within the last silence_s but no output for as long: say why, once per silence."""
        now = time.monotonic()
        quiet_s = now - (self.last_output or self.started)
        if self.last_input is None or now - self.last_input > self.silence_s or quiet_s < self.silence_s:
            self.silent_reported = False
            return
        reason = self.silence_reason()
        if reason is not None and not self.silent_reported:
            self.silent_reported = True
            self.diagnostics.report(
                "warn", f"no output: nothing published for {quiet_s:.0f} s while inputs arrive; {reason}"
            )

    def silence_reason(self) -> str | None:
        """Why inputs produce no output (nodes say more); None: the silence is intended."""
        level, message, _ = self.diagnostics.last
        if level != "ok":
            return f"last problem: {message}"
        return "no input set completed a frame (stamps apart beyond the sync tolerance, or a topic missing)"

    def report_unknown_parameters(self, parameters: ParameterSpec) -> None:
        """A params-file key this node does not declare (a typo) is an error on the log and
        /diagnostics, not silently ignored."""
        from tactile_pose_refiner.config_check import BUILTIN_PARAMETERS

        unknown = sorted(set(self._parameter_overrides) - set(parameters) - BUILTIN_PARAMETERS)
        if unknown:
            message = f"unknown parameters {unknown} (ignored); this node accepts: {', '.join(parameters)}"
            self.get_logger().error(message)
            self.diagnostics.report("error", f"config: {message}")

    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
        """Every subscription of a graph node (message_filters' too) is guarded at the boundary:
        a stamp far ahead of the node's clock is rejected, and an exception in the callback is
        reported on /diagnostics instead of ending the node."""
        return super().create_subscription(msg_type, topic, self._guarded(topic, callback), qos_profile, **kwargs)

    def _guarded(self, topic: str, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        def guarded(msg) -> None:
            self.last_input = time.monotonic()
            ahead = self.seconds_ahead(msg)
            if ahead is not None:
                self.diagnostics.report(
                    "error", f"implausible stamp: {topic} is {ahead:.0f} s ahead of the node clock (dropped)"
                )
                return
            try:
                callback(msg)
            except Exception as exc:  # noqa: BLE001 - the node's boundary: report, drop the message, go on
                self.get_logger().error(f"{topic}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                self.diagnostics.report("error", f"input failed: {topic}: {type(exc).__name__}: {exc}")

        return guarded

    def seconds_ahead(self, msg) -> float | None:
        """How far a message's header stamp lies beyond FUTURE_LIMIT_S ahead of the node clock,
        or None (no header, a plausible stamp, or a sim clock that has not started)."""
        header = getattr(msg, "header", None)
        now = self.get_clock().now().nanoseconds
        if header is None or now == 0:
            return None
        ahead = (stamp_ns(header.stamp) - now) / 1e9
        return ahead if ahead > FUTURE_LIMIT_S else None


def stale_by(node: Node, stamp, max_age_s: float) -> float | None:
    """Seconds by which a header stamp is older (or newer) than the node's clock allows;
    None when fresh, when max_age_s is 0 (off) or while a sim clock has not started."""
    now = node.get_clock().now().nanoseconds
    if max_age_s <= 0 or now == 0:
        return None
    age = (now - stamp_ns(stamp)) / 1e9
    return age if abs(age) > max_age_s else None


CATALOG_PARAMETER = {
    "catalog": ("", "a user's object catalog file(s), ':'-separated, merged over the bundled one; empty: TPR_CATALOG")
}


def object_catalog(parameter: str):
    """The object catalog of a node's `catalog` parameter (empty: the environment's TPR_CATALOG)."""
    import os

    from tactile_pose_refiner.core.scene.objects import ObjectCatalog

    return ObjectCatalog.from_config(catalogs=parameter.split(os.pathsep) if parameter.strip() else None)


def default_topic(key: str) -> str:
    """Recorded/driver topic name of config/topics.yaml (remappable with -r)."""
    return str(load_config("topics")[key])


# --- time synchronisation ---------------------------------------------------------------------
def synchronise(
    node: Node, topics: list[tuple[type, str]], qos, queue_size: int, slop_s: float, callback: Callable[..., None]
) -> str:
    """Call `callback(*messages)` with one message per topic, stamps within slop_s.

    message_filters.ApproximateTimeSynchronizer where it is importable (a full ROS 2
    install), else the core's ApproximateSync with the same semantics, which also clears itself
    (and says so on /diagnostics) when time jumps back. Returns which.
    """
    try:
        import message_filters
    except ImportError:
        on_jump = lambda seconds: node.diagnostics.report(  # noqa: E731
            "warn", f"time jumped back {seconds:.1f} s (a bag loop, a restarted driver): synchronisation cleared"
        )
        sync = ApproximateSync(len(topics), queue_size, slop_s, callback, on_jump)
        node._tpr_subscriptions = [
            node.create_subscription(msg_type, topic, _feeder(sync, index), qos)
            for index, (msg_type, topic) in enumerate(topics)
        ]
        return "tactile_pose_refiner.core.sync.ApproximateSync"
    subscribers = [message_filters.Subscriber(node, msg_type, topic, qos_profile=qos) for msg_type, topic in topics]
    sync = message_filters.ApproximateTimeSynchronizer(subscribers, queue_size, slop_s)
    sync.registerCallback(callback)
    node._tpr_subscriptions = subscribers + [sync]
    return "message_filters.ApproximateTimeSynchronizer"


def _feeder(sync: ApproximateSync, index: int) -> Callable[[Any], None]:
    return lambda msg: sync.add(index, stamp_ns(msg.header.stamp), msg)
