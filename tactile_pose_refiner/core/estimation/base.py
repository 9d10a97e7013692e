"""The estimators' one small interface: `estimate(frame) -> Estimate`, and the registration flow
both estimators share around their own hypotheses."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from tactile_pose_refiner.core.estimation.inputs import estimator_inputs
from tactile_pose_refiner.core.estimation.registration import Registration


@dataclass
class Estimate:
    """T: T_cam_obj (4, 4), None when no estimate could be made (status says why);
    confidence 0..1 (Scored.confidence of the chosen pose); source: which estimator;
    status: "ok", "degraded: ..." (a pose, with missing inputs) or "no input: ..." (no pose);
    symmetry_index: which of the object's symmetric equivalents colour chose; details: timing
    and hypothesis counts for diagnostics."""

    T: np.ndarray | None
    confidence: float
    source: str
    status: str
    ms: float = 0.0
    symmetry_index: int = 0
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.T is not None


class RegisteringEstimator:
    """What both estimators do around their own hypotheses: read the frame's inputs, pick the
    best hypothesis by staged ICP and score (Registration.select), choose the symmetric
    equivalent by colour and re-fit it, label the result. A subclass sets `name` and `stages`
    and implements `hypotheses(inputs, seed) -> (poses, details)`."""

    name = ""

    def __init__(self, cloud, hand, config: dict, stages: list[dict]) -> None:
        self.cloud = cloud
        self.hand = hand
        self.config = config
        self.stages = stages
        self.registration = Registration(cloud, config["registration"])

    def hypotheses(self, inputs, seed: int) -> tuple[list[np.ndarray], dict]:
        raise NotImplementedError

    def estimate(self, frame, seed: int = 0) -> Estimate:
        started = time.perf_counter()
        inputs = estimator_inputs(frame, self.hand, self.config["inputs"], seed)
        if len(inputs.points) < int(self.config["inputs"]["min_observed_points"]):
            why = "; ".join(inputs.missing) or f"{len(inputs.points)} depth points on the object"
            return Estimate(None, 0.0, self.name, f"no input: {why}")
        hypotheses, details = self.hypotheses(inputs, seed)
        best = self.registration.select(inputs, hypotheses, frame, self.stages)
        T, symmetry_index = self.registration.by_colour(best.T, frame.camera, frame.rgb, frame.depth_m)
        if symmetry_index:  # the equivalent is exact only up to the scan's asymmetry: re-fit it
            T = self.registration.icp(inputs, T, int(self.stages[-1]["icp_iterations"]))
        status = "ok" if not inputs.missing else "degraded: " + "; ".join(inputs.missing)
        return Estimate(
            T,
            best.confidence,
            self.name,
            status,
            (time.perf_counter() - started) * 1e3,
            symmetry_index,
            {
                "hypotheses": len(hypotheses),
                "fitness": best.fitness,
                "free_space": best.free_space,
                "contacts": best.contacts,
                **details,
            },
        )
