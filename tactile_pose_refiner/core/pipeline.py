"""Refine one frame: build its gradient sources, run a refiner variant, measure plausibility.

The ROS-free entry point the refiner node and `tpr bench` share. A variant (config/refiner.yaml)
names the active gradient sources and the checkpoint source, and may override the step schedule
and the loss scales; the diagnostics carry the intersection volume and contact area before and
after when the frame's hand is usable.
"""

from __future__ import annotations

import time
from functools import cached_property

import numpy as np

from tactile_pose_refiner.core.device import resolve_device
from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.gradients.base import loss_value
from tactile_pose_refiner.core.gradients.frame_sources import build_sources
from tactile_pose_refiner.core.metrics import ObjectMetrics
from tactile_pose_refiner.core.refiner import Plausibility, Refinement, Refiner
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.assets import HandAssets, ObjectAssets
from tactile_pose_refiner.core.scene.hand import HandUnusable, PosedHand
from tactile_pose_refiner.core.scene.objects import ObjectModel
from tactile_pose_refiner.core.symmetry import object_symmetry_axis, turn_to_lowest
from tactile_pose_refiner.core.tracking.tracker import Tracker


class FrameRefiner:
    """One object's refiner: assets built once, then `refine(frame, T_initial)` per frame."""

    def __init__(
        self,
        model: ObjectModel,
        hand: HandAssets | None = None,
        config: dict | None = None,
        metrics: ObjectMetrics | None = None,
    ) -> None:
        self.config = config or load_config("refiner")
        self.device = resolve_device(str(self.config.get("device", "cpu")))
        self.object = ObjectAssets.build(model, self.device)
        self.hand = hand or HandAssets.from_config()
        self.metrics = metrics or ObjectMetrics(model, sdf=self.object.sdf)
        physics = load_config("physics")
        physics["hand_point_band_m"] = float(self.config["physics_hand_band_m"])
        self.physics_config = physics

    def variant(self, name: str | None = None) -> dict:
        name = name or self.config["variant"]
        variants = self.config["variants"]
        if name not in variants:
            raise ValueError(f"unknown refiner variant {name!r}; known: {sorted(variants)}")
        return variants[name]

    def refine(
        self,
        frame: Frame,
        T_initial: np.ndarray,
        variant: str | None = None,
        iterations: int | None = None,
        posed: PosedHand | HandUnusable | None = None,
        on_iteration=None,
        measure: bool = True,
    ) -> Refinement:
        """Refine T_initial (4, 4) on `frame` with a variant (default: config's). measure: fill
        IV/CA before and after (a caller that takes its own metrics skips them). A non-finite
        initial pose is a ValueError (no variant has a pose to fall back on)."""
        started = time.perf_counter()
        if np.shape(T_initial) != (4, 4) or not np.isfinite(T_initial).all():
            raise ValueError("the initial pose must be a finite (4, 4) matrix")
        chosen = self.variant(variant)
        posed = self.hand.posed(frame) if posed is None else posed
        settings = self._settings(chosen, posed)
        refinement, start = self._solved_start(frame, chosen, posed, T_initial, settings, iterations, on_iteration)
        if refinement is None:
            refinement = self._whole_schedule(frame, chosen, posed, T_initial, settings, iterations, on_iteration)
        if measure and not isinstance(posed, HandUnusable):
            refinement.before = self.plausibility(T_initial, posed)
            refinement.after = self.plausibility(refinement.T, posed)
        refinement.diagnostics.status = with_implausible(refinement, self.config["plausibility"])
        refinement.diagnostics.start = start
        # the frame's whole work as a caller waits for it: sources built, runs, turn, measures
        refinement.diagnostics.wall_ms = (time.perf_counter() - started) * 1000.0
        return refinement

    def remember_hand(self, frame: Frame, refinement: Refinement, posed: PosedHand | HandUnusable):
        """After a refinement the camera vouched for (its solve judged by depth, status ok): the
        hand (`posed`, as refined with) refit with its touching taxels on the object at the result
        (HandAssets.fit_to_object), which a later frame without the camera recalls. None where
        it was not vouched for or not refit."""
        if not refinement.diagnostics.start.startswith("lm:") or refinement.diagnostics.status != "ok":
            return None
        return self.hand.fit_to_object(frame, refinement.T, self.object.model.geometry, posed)

    def _solved_start(self, frame, chosen, posed, T_initial, settings, iterations, on_iteration):
        """The variant's second-order start (`start: lm` or `touch_lm`) and the line on it; no
        refinement (None) where the whole schedule must run from T_initial."""
        refinement, start = None, "initial pose"
        touch_solve = chosen.get("start") == "touch_lm"
        if chosen.get("start", "initial") == "lm":
            T_solved, start = self._second_order_start(frame, T_initial, posed)
            if start.startswith("lm:"):  # a good fit: the refiner only polishes it
                run = (frame, chosen, posed, settings, iterations, on_iteration)
                refinement, start = self._polished(run, T_initial, T_solved, start)
            touch_solve = start.startswith("lm unchecked")  # no depth to judge it by: the camera is off
        if touch_solve and not isinstance(posed, HandUnusable):  # touch and the hand, the start as prior
            refinement, solved = self._touch_solved(frame, chosen, posed, T_initial, settings)
            start = solved if chosen.get("start") == "touch_lm" else start.replace("whole schedule", solved)
        return refinement, start

    def _touch_solved(self, frame, chosen, posed, T_initial, settings) -> tuple[Refinement, str]:
        """No camera (`start: touch_lm`): touch and the hand's contact solved by Levenberg-Marquardt
        with the initial pose as prior (config `touch_solve`); the variant's sources measure the
        result (no first-order steps: they wander where touch cannot see). With the line on it."""
        config = self.config["touch_solve"]
        solved = self.tracker.touch_solve(
            frame, T_initial, posed, float(config["sigma_mm"]), float(config["sigma_deg"]), int(config["iterations"])
        )
        settings = self._polish_settings(settings)
        refinement = self._run(frame, chosen, posed, solved.T, settings, 0, self.config["polish"]["grids_deg"])
        touch = solved.block_stats.get("touch", {}).get("points", 0)
        return refinement, f"touch lm: {solved.iterations} iterations, {touch} taxels in contact"

    def _polished(self, run: tuple, T_initial: np.ndarray, T_solved: np.ndarray, start: str) -> tuple:
        """The solve polished (and the start line said of it); where the result is implausible,
        the whole schedule from T_initial instead if it fits depth better."""
        frame, chosen, posed, settings, iterations, on_iteration = run
        polish = self._polish_iterations(posed) if iterations is None else iterations
        start += f", polished {polish} iterations" if polish else ", hand corrected: not polished"
        grids, polish_settings = self.config["polish"]["grids_deg"], self._polish_settings(settings)
        refinement = self._run(frame, chosen, posed, T_solved, polish_settings, polish, grids, on_iteration)
        problems = implausible(refinement, self.config["plausibility"])
        if not problems:
            return refinement, start
        # a solve that fit depth and touch well enough, in a wrong basin?
        start += f"; result implausible ({', '.join(problems)}): whole schedule"
        whole = self._whole_schedule(frame, chosen, posed, T_initial, settings, iterations, on_iteration)
        if depth_loss(whole) < depth_loss(refinement):
            return whole, start
        return refinement, start + " fit depth no better, solve kept"  # an occluded object fits no better anywhere

    def _whole_schedule(self, frame, chosen, posed, T_initial, settings, iterations, on_iteration) -> Refinement:
        grids = self.config["symmetry_turn"]["grids_deg"]
        return self._run(frame, chosen, posed, T_initial, settings, iterations, grids, on_iteration)

    def _run(self, frame, chosen, posed, T_from, settings, iterations, grids, on_iteration=None) -> Refinement:
        """The variant's sources built about T_from, the heuristic refiner run from it, the
        output turned about a symmetry axis, and the restart."""
        names, checkpoint = tuple(chosen["sources"]), chosen.get("checkpoint")
        built = build_sources(
            frame,
            self.object,
            self.hand,
            T_from,
            tuple(dict.fromkeys(names + ((checkpoint,) if checkpoint else ()))),
            self._warp_device(),
            posed,
            self.physics_config,
        )
        refiner = Refiner(
            {name: built[name] for name in names},
            built[checkpoint] if checkpoint else None,
            self.object.body.com,
            self.object.body.radius,
            settings,
        )
        refinement = refiner.run(T_from, iterations, on_iteration)
        if checkpoint and refinement.diagnostics.iterations:
            self._turn_about_symmetry_axis(refinement, built[checkpoint], grids)
        return refiner.restarted(refinement, iterations, on_iteration)

    @cached_property
    def tracker(self) -> Tracker:
        return Tracker(self.object, self.hand)

    def _second_order_start(self, frame: Frame, T_initial: np.ndarray, posed) -> tuple[np.ndarray, str]:
        """The tracker's Levenberg-Marquardt solve from T_initial (depth, touch, hand contact on
        `posed`, the frame's hand as corrected; a can turned by its texture) and a line on it; a
        poor fit (depth or touch disagreeing with it), or one without the depth points to judge
        it by (the camera occluded or off), gives T_initial back, for the whole schedule."""
        hand = posed if isinstance(posed, PosedHand) else None  # the corrected hand, where it was
        solved = self.tracker.start(
            frame, T_initial, hypotheses=int(self.config.get("start_hypotheses", 1)), posed=hand
        )
        summary = f"{solved.iterations} iterations, {solved.ms:.0f} ms"
        depth_points = solved.stats.get("depth", {}).get("points", 0)
        if depth_points < int(self.tracker.config["confidence"]["min_depth_points"]):  # nothing judged its fit
            return T_initial, f"lm unchecked ({depth_points} depth points; {summary}): whole schedule"
        if solved.problems or solved.lost or not np.isfinite(solved.T).all():
            return T_initial, f"lm fit poor ({', '.join(solved.problems) or solved.status}; {summary}): whole schedule"
        return solved.T, f"lm: {summary}"

    def _polish_settings(self, settings: dict) -> dict:
        """The refiner's settings for a short run from a solved pose: the polish's step schedule,
        no restart."""
        step = {key: value for key, value in self.config["polish"]["step"].items() if value is not None}
        return {**settings, "step": {**settings["step"], **step}, "restart": {"iterations": 0}}

    def _polish_iterations(self, posed: PosedHand | HandUnusable) -> int:
        """The polish's iterations; config `corrected_hand` may override them where the hand had
        to be corrected from depth."""
        override = (self.config.get("corrected_hand") or {}).get("polish_iterations")
        if override is not None and self._hand_corrected(posed):
            return int(override)
        return int(self.config["polish"]["iterations"])

    @staticmethod
    def _hand_corrected(posed: PosedHand | HandUnusable) -> bool:
        correction = None if isinstance(posed, HandUnusable) else posed.correction
        return correction is not None and correction.status == "ok"

    def _settings(self, variant: dict, posed: PosedHand | HandUnusable) -> dict:
        """The variant's refiner settings; where the hand had to be corrected from depth (its
        encoders or calibration were off), config `corrected_hand` overrides them."""
        settings = variant_config(self.config, variant)
        override = {key: value for key, value in (self.config.get("corrected_hand") or {}).items() if key in settings}
        if not self._hand_corrected(posed) or not override:
            return settings
        return {**settings, **{key: {**settings[key], **value} for key, value in override.items()}}

    def _turn_about_symmetry_axis(self, refinement: Refinement, checkpoint, grids_deg: list) -> None:
        """A body symmetric about an axis: the output turned about it to the lowest checkpoint
        loss (core/symmetry.py; config `symmetry_turn`)."""
        if self._symmetry_axis is None:
            return
        refinement.T, refinement.diagnostics.turn_deg = turn_to_lowest(
            refinement.T, self._symmetry_axis, self.object.body.com, lambda T: loss_value(checkpoint, T), grids_deg
        )

    @cached_property
    def _symmetry_axis(self) -> np.ndarray | None:
        """The object's axis of revolution where config `symmetry_turn` is on; found once (its
        surface test samples the mesh: ~15 ms a refinement otherwise)."""
        settings = self.config.get("symmetry_turn") or {}
        if not settings.get("enabled", False):
            return None
        return object_symmetry_axis(
            self.object.model.symmetry,
            self.object.body.inertia,
            float(settings["moment_tolerance"]),
            self.object.model.geometry,
            self.object.body.com,
        )

    def plausibility(self, T: np.ndarray, posed: PosedHand) -> Plausibility:
        return Plausibility(self.metrics.intersection_volume(T, posed).cm3, self.metrics.contact_area_cm2(T, posed))

    def _warp_device(self) -> str:
        return "cuda:0" if self.device.startswith("cuda") else "cpu"


def with_implausible(refinement: Refinement, limits: dict) -> str:
    """The refinement's status, "degraded: implausible result ..." where its fit or its hand
    contact is beyond what a real frame gives (absurd intrinsics, a wrong mesh, a broken hand)."""
    problems = implausible(refinement, limits)
    status = refinement.diagnostics.status
    if not problems:
        return status
    label = f"implausible result ({', '.join(problems)})"
    return f"degraded: {label}" if status == "ok" else f"{status}; {label}"


def depth_loss(refinement: Refinement) -> float:
    """The refinement's final depth loss [mm^2]; inf where it has none."""
    value = refinement.diagnostics.final_losses().get("depth")
    return float(value) if value is not None and np.isfinite(value) else np.inf


def implausible(refinement: Refinement, limits: dict) -> list[str]:
    """Where the refinement's final depth fit or its intersection (when measured) exceed the limits."""
    problems = []
    depth = depth_loss(refinement)
    if np.isfinite(depth) and depth > limits["max_depth_loss_mm2"]:
        problems.append(f"depth loss {depth:.3g} mm2 > {limits['max_depth_loss_mm2']:g}")
    if refinement.after is not None and refinement.after.iv_cm3 > limits["max_intersection_cm3"]:
        problems.append(f"intersection {refinement.after.iv_cm3:.3g} cm3 > {limits['max_intersection_cm3']:g}")
    return problems


def variant_config(config: dict, variant: dict) -> dict:
    """The refiner configuration of a variant: its own `step` and `loss_scale` settings override
    the shared ones (e.g. a longer schedule)."""
    overrides = {key: {**config[key], **variant[key]} for key in ("step", "loss_scale") if variant.get(key)}
    return {**config, **overrides} if overrides else config
