"""Errors of the synthetic camera."""

from __future__ import annotations

from firmware_sim.errors import SimError


class CameraSimError(SimError):
    """Root of the camera simulator's errors: a bad option or script, or a
    video that cannot be written. Part of :class:`firmware_sim.errors.SimError`."""
