"""The heuristic multi-gradient refiner (paper §III-C, SPEC §4).

Each iteration, every active source i proposes a candidate step along its own negative
gradient; dL_i is the change of that source's own loss after the step. The weights are
alpha_i ∝ max(0, -dL_i), normalised to sum 1 (0 for a source that did not improve), and the
pose moves by sum_i alpha_i step_i. Refinement stops after N iterations, or when no source
improves even at the smallest step length. Checkpointing: the output is the state with the
lowest checkpoint loss (L_DR) seen, not the last one; a state within `checkpoint_tolerance` of
that lowest loss ties with it, and the later state wins. A converged refinement may be
restarted from its output (`Refiner.restarted`).

Steps live in the tangent space of the pose (dt, omega), turning about the object's centre of
mass (see gradients.base.perturbed_pose); their lengths are measured as |dt|^2 + (r |omega|)^2.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from tactile_pose_refiner.core.gradients.base import GradientSource, apply_delta, loss_and_gradient, loss_at
from tactile_pose_refiner.core.resources import load_config

MM = 1000.0


@dataclass
class Diagnostics:
    """What a refinement did. losses / weights: per source, one entry per iteration (the loss at
    the iteration's start pose; alpha_i of its update). checkpoint_losses: the checkpoint loss of
    the state after iteration k (index 0 = the initial pose)."""

    iterations: int = 0
    kept_iteration: int = 0
    losses: dict[str, list[float]] = field(default_factory=dict)
    weights: dict[str, list[float]] = field(default_factory=dict)
    step_mm: dict[str, list[float]] = field(default_factory=dict)
    checkpoint_losses: list[float] = field(default_factory=list)
    motion_mm: list[float] = field(default_factory=list)  # length of each update (step metric)
    source_status: dict[str, str] = field(default_factory=dict)
    stop_reason: str = ""
    status: str = "ok"
    wall_ms: float = 0.0
    turn_deg: float = 0.0  # the output's turn about the object's symmetry axis (pipeline)
    start: str = ""  # where the refiner started: the initial pose, or a second-order solve (pipeline)

    def final_losses(self) -> dict[str, float]:
        return {name: values[-1] for name, values in self.losses.items() if values}

    def mean_weights(self) -> dict[str, float]:
        return {name: float(np.mean(values)) if values else 0.0 for name, values in self.weights.items()}

    def followed_by(self, restart: Diagnostics) -> Diagnostics:
        """These diagnostics and those of a refinement restarted from this one's output, as one
        (the restart's iteration 0 is this one's output state)."""
        kept = self.iterations + restart.kept_iteration if restart.kept_iteration else self.kept_iteration
        return Diagnostics(
            iterations=self.iterations + restart.iterations,
            kept_iteration=kept,
            losses={n: v + restart.losses.get(n, []) for n, v in self.losses.items()},
            weights={n: v + restart.weights.get(n, []) for n, v in self.weights.items()},
            step_mm={n: v + restart.step_mm.get(n, []) for n, v in self.step_mm.items()},
            checkpoint_losses=self.checkpoint_losses + restart.checkpoint_losses[1:],
            motion_mm=self.motion_mm + restart.motion_mm,
            source_status=restart.source_status,
            stop_reason=f"{restart.stop_reason} (restarted after {self.iterations})",
            status=restart.status,
            wall_ms=self.wall_ms + restart.wall_ms,
            turn_deg=self.turn_deg,
        )


@dataclass
class Plausibility:
    """Intersection volume [cm^3] and contact area [cm^2] of a pose against the frame's hand."""

    iv_cm3: float
    ca_cm2: float


@dataclass
class Refinement:
    T: np.ndarray  # the output pose (4, 4), camera frame
    T_last: np.ndarray  # the last iterate (differs from T with checkpointing)
    diagnostics: Diagnostics
    before: Plausibility | None = None  # at the initial pose (filled by pipeline.FrameRefiner)
    after: Plausibility | None = None  # at the output pose


class Refiner:
    """sources: name -> GradientSource (the active gradients); checkpoint: the source whose loss
    picks the output state (None: the last state); pivot (3,): the point the object turns about,
    object frame; radius_m: turns a rotation into a length for the step metric."""

    def __init__(
        self,
        sources: dict[str, GradientSource],
        checkpoint: GradientSource | None,
        pivot: np.ndarray,
        radius_m: float,
        config: dict | None = None,
    ) -> None:
        self.sources, self.checkpoint = sources, checkpoint
        self.pivot = np.asarray(pivot, dtype=np.float64)
        self.radius_m = max(float(radius_m), 1e-3)
        self.config = config or load_config("refiner")
        self._evaluated: tuple[np.ndarray, dict] | None = None
        if self.config["improvement"] not in ("absolute", "relative"):
            raise ValueError(f"refiner improvement must be absolute|relative, got {self.config['improvement']!r}")

    def run(
        self,
        T_initial: np.ndarray,
        iterations: int | None = None,
        on_iteration: Callable[[int, np.ndarray], None] | None = None,
    ) -> Refinement:
        """Refine from T_initial (4, 4). on_iteration(k, T_k) is called after each update.
        A non-finite initial pose is a ValueError (there is no pose to fall back on); unusable
        sources give a labelled status and, when none is usable, the initial pose back."""
        started = time.perf_counter()
        self._evaluated, self._second_moment = None, {}
        iterations = int(self.config["iterations"] if iterations is None else iterations)
        step = self.config["step"]
        lengths = {name: float(step["initial_mm"]) / MM for name in self.sources}
        diagnostics = Diagnostics(
            losses={n: [] for n in self.sources},
            weights={n: [] for n in self.sources},
            step_mm={n: [] for n in self.sources},
        )
        T = np.array(T_initial, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError("the initial pose must be a finite (4, 4) matrix")
        best_T, best_loss = T, np.inf
        self._cap_m, previous_delta = float(step["max_mm"]) / MM, np.zeros(6)
        for k in range(iterations + 1):
            proposals = self._proposals(T, lengths, diagnostics)
            best_T, best_loss = self._keep_best(k, T, proposals, best_T, best_loss, diagnostics)
            diagnostics.stop_reason = self._stop_reason(k, iterations, proposals, lengths)
            if diagnostics.stop_reason:
                break
            tolerance = float(self.config["min_relative_improvement"])
            scales = self.config.get("loss_scale", {})
            gains = {
                name: p.gain(self.config["improvement"], tolerance) * float(scales.get(name, 1.0))
                for name, p in proposals.items()
            }
            total = sum(gains.values())
            for name in self.sources:
                diagnostics.weights[name].append(gains[name] / total if total > 0 else 0.0)
            diagnostics.iterations = k + 1
            delta = np.zeros(6)
            if total > 0.0:
                delta = sum(gains[n] / total * p.delta for n, p in proposals.items() if gains[n] > 0)
                T = apply_delta(T, delta, self.pivot)
            self._adapt(lengths, gains, step, self._reversed(delta, previous_delta))
            previous_delta = delta if total > 0.0 else previous_delta
            diagnostics.motion_mm.append(self._length(delta) * MM)
            if on_iteration is not None:
                on_iteration(k + 1, T)
        diagnostics.status = _overall_status(diagnostics.source_status, self.sources)
        diagnostics.wall_ms = (time.perf_counter() - started) * 1000.0
        # an unusable checkpoint source never scored a state: the last state is the output
        # (its status is in diagnostics.status), not the untouched initial pose
        checkpointed = self.checkpoint is not None and np.isfinite(best_loss)
        return Refinement(best_T if checkpointed else T, T, diagnostics)

    def restarted(
        self,
        first: Refinement,
        iterations: int | None = None,
        on_iteration: Callable[[int, np.ndarray], None] | None = None,
    ) -> Refinement:
        """A converged refinement run once more from its output with fresh step lengths and cap,
        within what is left of the `iterations` budget and at most config `restart.iterations`.
        The cap collapses once sources disagree, sometimes before the pose has settled; the
        restart's checkpoint keeps its start among the states, so it loses nothing on L_DR."""
        done = first.diagnostics.iterations
        budget = int(self.config["iterations"] if iterations is None else iterations) - done
        budget = min(budget, int((self.config.get("restart") or {}).get("iterations", 0)))
        if budget <= 0 or not first.diagnostics.stop_reason.startswith("converged"):
            return first
        shifted = None if on_iteration is None else (lambda k, T: on_iteration(done + k, T))
        second = self.run(first.T, budget, shifted)
        return Refinement(second.T, second.T_last, first.diagnostics.followed_by(second.diagnostics))

    def _stop_reason(self, k: int, iterations: int, proposals: dict, lengths: dict) -> str:
        if k == iterations:
            return f"{iterations} iterations"
        if not any(p.usable for p in proposals.values()):
            return "no usable gradient source"
        step = self.config["step"]
        smallest = float(step["min_mm"]) / MM
        tolerance = float(self.config["min_relative_improvement"])
        if all(p.gain("absolute", tolerance) == 0.0 for p in proposals.values()) and all(
            length <= smallest for length in lengths.values()
        ):
            return "converged: no source improves at the smallest step"
        if self._cap_m <= smallest:
            return "converged: step lengths at their floor"
        return ""

    def _reversed(self, delta: np.ndarray, previous: np.ndarray) -> bool:
        """Did this update turn back against the previous one by more than 120 degrees (in the
        step metric)? Sideways jitter while travelling (RMSProp inflates tiny gradient
        components) is not the sources' disagreement and must not stop the travel."""
        a, b = self._in_metric(delta), self._in_metric(previous)
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        return norms > 0.0 and float(np.dot(a, b)) < -0.5 * norms

    # -- one iteration ---------------------------------------------------------------------------

    def _proposals(self, T: np.ndarray, lengths: dict[str, float], diagnostics: Diagnostics) -> dict[str, Proposal]:
        if self._evaluated is None or not np.array_equal(self._evaluated[0], T):
            # (after an iteration without improvement the pose did not move: reuse)
            self._evaluated = (T, {name: self._evaluate(name, source, T) for name, source in self.sources.items()})
        proposals = {}
        for name, source in self.sources.items():
            result, direction = self._evaluated[1][name]
            diagnostics.source_status[name] = result.status
            diagnostics.losses[name].append(float(result.value.detach()) if result.ok else float("nan"))
            diagnostics.step_mm[name].append(lengths[name] * MM)
            proposals[name] = self._candidate(source, T, result, direction, lengths[name])
        return proposals

    def _evaluate(self, name: str, source: GradientSource, T: np.ndarray):
        """The source's loss at T and its descent direction: the gradient w.r.t. (dt, r omega)
        (a turn measured by the arc its rim moves), preconditioned, unit length in that metric."""
        result, gradient = loss_and_gradient(source, T, self.pivot)
        scaled = np.r_[gradient[:3], gradient[3:] / self.radius_m]
        if not result.ok or not np.any(scaled):
            return result, None
        direction = self._preconditioned(name, scaled)
        return result, direction / np.linalg.norm(direction)

    def _in_metric(self, delta: np.ndarray) -> np.ndarray:
        """A step (dt, omega) as (dt, r omega): the coordinates of the step metric [m]."""
        return np.r_[delta[:3], self.radius_m * delta[3:]]

    def _length(self, delta: np.ndarray) -> float:
        """|delta| in the step metric [m]: sqrt(|dt|^2 + (r |omega|)^2)."""
        return float(np.linalg.norm(self._in_metric(delta)))

    def _preconditioned(self, name: str, gradient: np.ndarray) -> np.ndarray:
        """RMSProp: each coordinate divided by the running RMS of its own gradient. The losses
        are ill-conditioned (a silhouette hardly constrains depth along the view ray), and a
        plain gradient direction zig-zags across such valleys."""
        beta = float(self.config["step"]["rms_decay"])
        if beta <= 0.0:
            return gradient
        previous = self._second_moment.get(name)
        moment = gradient**2 if previous is None else beta * previous + (1.0 - beta) * gradient**2
        self._second_moment[name] = moment
        return gradient / (np.sqrt(moment) + 1e-12)

    def _candidate(self, source, T, result, direction, length) -> Proposal:
        """The step of `length` along the source's descent direction, and its loss there, with
        the source's per-pose state (e.g. which triangles are visible) held as it was at T, so
        that dL compares like with like."""
        loss = float(result.value.detach())
        if direction is None:
            return Proposal(np.zeros(6), loss, loss, usable=result.ok)
        move = -length * direction
        delta = np.r_[move[:3], move[3:] / self.radius_m]
        with source.frozen():
            candidate = loss_at(source, apply_delta(T, delta, self.pivot))
        after = float(candidate.value) if candidate.ok and torch.isfinite(candidate.value) else np.inf
        return Proposal(delta, loss, after)

    def _keep_best(self, k, T, proposals, best_T, best_loss, diagnostics):
        """Checkpointing: the checkpoint loss of state T (reusing the active render source's
        value when it is one of the sources)."""
        if self.checkpoint is None:
            return T, best_loss
        name = next((n for n, s in self.sources.items() if s is self.checkpoint), None)
        if name is not None and proposals[name].usable:
            value = proposals[name].before
        else:
            result = loss_at(self.checkpoint, T)
            value = float(result.value) if result.ok else np.nan
            diagnostics.source_status.setdefault("checkpoint", result.status)
        diagnostics.checkpoint_losses.append(value)
        if not np.isfinite(value):
            return best_T, best_loss
        if value < best_loss:
            diagnostics.kept_iteration = k
            return T, value
        # a tie (within the tolerance) goes to the later state: the other sources moved it on
        if value <= best_loss * (1.0 + float(self.config.get("checkpoint_tolerance", 0.0))):
            diagnostics.kept_iteration = k
            return T, best_loss
        return best_T, best_loss

    def _adapt(self, lengths: dict[str, float], gains: dict[str, float], step: dict, reversed_: bool) -> None:
        """Per source: grow after an improving candidate, shrink otherwise; all lengths under a
        cap that decays every iteration, and faster whenever the update turned back. Without
        the cap the sources reach an equilibrium where each one's own candidate still improves
        its own loss, and the pose jitters by the step length forever (measured: ~0.5 mm per
        iteration after 300 iterations); turning back is that jitter's signature."""
        decay = float(step["decay"]) * (float(step.get("reversal_decay", 1.0)) if reversed_ else 1.0)
        low = float(step["min_mm"]) / MM
        self._cap_m = max(low, self._cap_m * decay)
        for name, gain in gains.items():
            factor = float(step["grow"]) if gain > 0 else float(step["shrink"])
            lengths[name] = float(np.clip(lengths[name] * factor, low, self._cap_m))


@dataclass
class Proposal:
    """One source's candidate: step delta (6,), its loss before and after the step."""

    delta: np.ndarray
    before: float
    after: float
    usable: bool = True

    def gain(self, improvement: str, tolerance: float = 0.0) -> float:
        """max(0, -dL), or relative to the loss before the step; 0 when the relative drop is
        within `tolerance`."""
        if not self.usable or not np.isfinite(self.after):
            return 0.0
        drop = max(0.0, self.before - self.after)
        relative = drop / self.before if self.before > 0 else 0.0
        if relative <= tolerance:  # below the noise floor of the losses: no improvement
            return 0.0
        return relative if improvement == "relative" else drop


def _overall_status(source_status: dict[str, str], sources: dict) -> str:
    problems = [f"{name} {status}" for name, status in source_status.items() if status != "ok"]
    if not any(source_status.get(name) == "ok" for name in sources):
        return "degraded: no usable gradient source" + (f" ({'; '.join(problems)})" if problems else "")
    return "ok" if not problems else "degraded: " + "; ".join(problems)
