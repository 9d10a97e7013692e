"""Rigid-body contact physics of the object in the fixed hand (Warp kernels, torch integration)."""
