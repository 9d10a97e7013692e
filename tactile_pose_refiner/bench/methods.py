"""The benchmark's methods on one frame (paper §IV-D, §V): each turns an initial pose into an
output pose, timed; then the frame's metrics of that pose against the ground truth.

Methods: initial (no refinement), icp, icp_cp (ICP with checkpointing on L_DR), estimator (the
initial pose estimator of config/estimator.yaml's `default`, from the frame alone: it ignores
the initial pose), lm (the tracker's Levenberg-Marquardt start on depth, touch and hand contact,
with the texture turn of cans: core/tracking; `ours` starts from it), and every refiner variant
of config/refiner.yaml (physics, physics_cp, render, depth, tactile, ours, ours_paper,
no_render, ...). A method may carry an iteration count: "ours@100".
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tactile_pose_refiner.core.baselines import Icp
from tactile_pose_refiner.core.estimation import make_estimator
from tactile_pose_refiner.core.estimation.base import Estimate
from tactile_pose_refiner.core.estimation.model_cloud import ModelCloud
from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.gradients.base import loss_value
from tactile_pose_refiner.core.gradients.render.source import RenderSource
from tactile_pose_refiner.core.metrics import orientation_error_deg, position_error_cm
from tactile_pose_refiner.core.pipeline import FrameRefiner
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.hand import hand_mesh
from tactile_pose_refiner.core.scene.objects import ObjectModel

BASELINES = ("initial", "icp", "icp_cp", "estimator", "lm")


def parse_method(name: str) -> tuple[str, int | None]:
    """'ours@100' -> ('ours', 100); 'ours' -> ('ours', None)."""
    base, _, iterations = name.partition("@")
    return base, (int(iterations) if iterations else None)


def check_methods(names: list[str], variants: dict) -> None:
    for name in names:
        base, _ = parse_method(name)
        if base not in BASELINES and base not in variants:
            raise ValueError(f"unknown method {base!r}; known: {', '.join(BASELINES + tuple(variants))}")


@dataclass
class MethodResult:
    T: np.ndarray
    ms: float
    status: str = "ok"
    trace: list[tuple[float, float, float]] = field(default_factory=list)  # (PE cm, OE deg, IV cm3) per iteration


class ObjectBench:
    """One object's methods and metrics, built once per worker process."""

    def __init__(self, model: ObjectModel, estimator: str | None = None) -> None:
        self.model = model
        self.refiner = FrameRefiner(model)
        self.icp = Icp(model.geometry)
        self.estimator_config = load_config("estimator")
        self.default_estimator = estimator or self.estimator_config["default"]
        self.estimators: dict = {}
        self.estimates: dict[tuple[str, str], Estimate] = {}

    def estimate(self, name: str, frame: Frame, key: str) -> Estimate:
        """The named estimator's result on the frame (`key` names the frame; computed once, so
        the method `estimator` and initial poses from it share one run)."""
        if (name, key) not in self.estimates:
            if name not in self.estimators:
                self.estimators[name] = make_estimator(
                    name, self.model, self.refiner.hand, self.estimator_config, self.cloud
                )
            seed = zlib.crc32(key.encode())
            self.estimates[(name, key)] = self.estimators[name].estimate(frame, seed)
        return self.estimates[(name, key)]

    def symmetric_oe_deg(self, T: np.ndarray, T_gt: np.ndarray) -> float:
        """OE against the nearest of the truth's geometric equivalents (the shape's symmetry
        group, found on the surface): a flipped box or a can turned about its axis looks the
        same to depth and touch; only texture tells them apart."""
        return min(orientation_error_deg(T, np.asarray(T_gt) @ g) for g in self.cloud.symmetries)

    @cached_property
    def cloud(self) -> ModelCloud:
        """The model as both estimators see it, built once for either."""
        return ModelCloud.build(self.model, self.estimator_config["model"], self.estimator_config["symmetry"])

    def run(
        self,
        method: str,
        frame: Frame,
        T_initial: np.ndarray,
        posed,
        iterations: int | None,
        trace=None,
        key: str = "",
    ) -> MethodResult:
        """trace: a posed hand (the true one in the bench) to record PE, OE and IV against at
        every iteration; None: no trace."""
        base, own_iterations = parse_method(method)
        iterations = own_iterations or iterations
        started = time.perf_counter()
        if base == "initial":
            return MethodResult(T_initial, 0.0)
        if base == "estimator":  # no pose: the initial one stands, the status says so
            result = self.estimate(self.default_estimator, frame, key)
            return MethodResult(
                result.T if result.ok else T_initial,
                result.ms,
                result.status if result.ok else f"no estimate: {result.status}",
            )
        if base == "lm":
            result = self.refiner.tracker.start(frame, T_initial, iterations)
            return MethodResult(result.T, result.ms, result.status.replace("reinitialised", "ok", 1))
        if base in ("icp", "icp_cp"):
            checkpoint = render_score(self.model, frame, posed, T_initial) if base == "icp_cp" else None
            result = self.icp.run(frame.object_points(), T_initial, iterations, checkpoint)
            return MethodResult(result.T, (time.perf_counter() - started) * 1000.0, result.status)
        steps: list[tuple[float, float, float]] = []
        record = None
        if trace is not None and frame.T_cam_obj is not None:

            def record(k, T):
                iv = self.refiner.metrics.intersection_volume(T, trace).cm3  # ~20 ms: only for --report
                steps.append((position_error_cm(T, frame.T_cam_obj), orientation_error_deg(T, frame.T_cam_obj), iv))

        refinement = self.refiner.refine(frame, T_initial, base, iterations, posed, record, measure=False)
        self.refiner.remember_hand(frame, refinement, posed)  # as the node does: a camera-off frame after recalls it
        return MethodResult(refinement.T, refinement.diagnostics.wall_ms, refinement.diagnostics.status, steps)

    def metrics(self, T: np.ndarray, T_gt: np.ndarray, posed, truth: dict) -> dict:
        """PE, OE, CA, IV, the deviations from the ground truth's CA / IV (`truth`) and SD (the
        object released at T in the hand: how far it falls, DeepSimHO's simulation)."""
        plausible = self.refiner.plausibility(T, posed)
        return {
            "oe_sym_deg": self.symmetric_oe_deg(T, T_gt),
            "sd_cm": self.refiner.metrics.stability(T, posed).displacement_cm,
            "pe_cm": position_error_cm(T, T_gt),
            "oe_deg": orientation_error_deg(T, T_gt),
            "ca_cm2": plausible.ca_cm2,
            "iv_cm3": plausible.iv_cm3,
            "dca_cm2": abs(plausible.ca_cm2 - truth["ca_cm2"]),
            "div_cm3": abs(plausible.iv_cm3 - truth["iv_cm3"]),
        }

    def truth(self, frame: Frame, posed) -> dict:
        """The ground truth's CA, IV and SD: what a method's are compared with."""
        plausible = self.refiner.plausibility(frame.T_cam_obj, posed)
        sd_cm = self.refiner.metrics.stability(frame.T_cam_obj, posed).displacement_cm
        return {"ca_cm2": plausible.ca_cm2, "iv_cm3": plausible.iv_cm3, "sd_cm": sd_cm}


def render_score(model: ObjectModel, frame: Frame, posed=None, T_initial: np.ndarray | None = None):
    """L_DR of the frame as a pose -> float score (ICP with checkpointing keeps its minimum);
    posed: the frame's PosedHand (occludes, as in the refiner) or why it is unusable;
    T_initial: where L_DR measures its renderer's edge (as in the refiner)."""
    source = RenderSource(
        model, frame.camera, frame.rgb, frame.mask, frame.depth_m, occluders=hand_mesh(posed), reference_pose=T_initial
    )
    return lambda T: loss_value(source, T)
