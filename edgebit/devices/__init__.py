"""Device kinds and the ``--device`` syntax: a registry of kinds, each one module in this package.

``local`` runs on this machine. ``qemu`` emulates the bundle's target with qemu-user; ``qemu:TARGET`` emulates a
given target (a bundle built for another architecture is then refused). ``ssh://[user@]host[:port][/dir]`` reaches
a board over SSH, ``adb[:serial]`` a phone (or any adbd) over adb; ``edgebit vm start`` boots an emulated board that
speaks both.

Adding a device kind: a module with a :class:`~edgebit.devices.base.Device` subclass and a ``KIND``
(:class:`~edgebit.devices.base.DeviceKind`), and one line in :data:`DEVICE_MODULES`.
"""

from __future__ import annotations

import importlib

from edgebit.devices.base import RUN_TIMEOUT_S, CommandResult, Device, DeviceError, DeviceKind
from edgebit.errors import EdgebitError

DEVICE_MODULES = (
    "edgebit.devices.local",
    "edgebit.devices.qemu",
    "edgebit.devices.ssh",
    "edgebit.devices.adb",
)


def device_kinds() -> list[DeviceKind]:
    return [importlib.import_module(module).KIND for module in DEVICE_MODULES]


def devices_help() -> str:
    """The --device help text, from the registry."""
    return ", ".join(f"{kind.syntax} ({kind.description})" for kind in device_kinds())


def open_device(spec: str, bundle_target: str | None = None) -> Device:
    """A device from its ``--device`` spec; ``bundle_target`` lets plain ``qemu`` pick what to emulate."""
    for kind in device_kinds():
        if kind.matches(spec):
            return kind.open(spec, bundle_target)
    raise EdgebitError(f"unknown device {spec!r}; use {' or '.join(kind.syntax for kind in device_kinds())}")


__all__ = ["RUN_TIMEOUT_S", "CommandResult", "Device", "DeviceError", "DeviceKind", "device_kinds", "devices_help", "open_device"]
