"""The estimators' one small interface: `estimate(frame) -> Estimate`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
