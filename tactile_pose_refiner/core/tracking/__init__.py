"""Tracking: a second-order pose solver on stacked residuals and the per-frame tracker."""
