"""Gradient sources of the refinement (paper §III-B): one module per source, one interface
(`base.GradientSource`): a differentiable loss of the object pose (R, t) in the camera frame."""
