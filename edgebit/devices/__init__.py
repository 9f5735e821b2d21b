"""Device kinds and the ``--device`` syntax.

``local`` runs on this machine. ``qemu`` emulates the bundle's target with qemu-user; ``qemu:TARGET`` emulates a
given target (a bundle built for another architecture is then refused). ``ssh://user@host`` and ``adb[:serial]``
are reserved for real boards and phones.
"""

from __future__ import annotations

from edgebit.devices.base import CommandResult, Device, DeviceError
from edgebit.errors import EdgebitError
from edgebit.targets import resolve_target

RESERVED = ("ssh://", "adb")


def open_device(spec: str, bundle_target: str | None = None) -> Device:
    """A device from its ``--device`` spec; ``bundle_target`` lets plain ``qemu`` pick what to emulate."""
    from edgebit.devices.local import LocalDevice
    from edgebit.devices.qemu import QemuDevice

    if spec == "local":
        return LocalDevice()
    if spec == "qemu" or spec.startswith("qemu:"):
        name = spec.partition(":")[2] or bundle_target
        if not name:
            raise EdgebitError("--device qemu needs a bundle or a target: use qemu:TARGET (e.g. qemu:arm64)")
        target = resolve_target(name)
        if not target.qemu:
            raise EdgebitError(f"target {target.name} is the host: use --device local")
        return QemuDevice(target)
    if spec.startswith(RESERVED):
        raise EdgebitError(f"device {spec!r}: ssh and adb devices are not available yet; use local or qemu")
    raise EdgebitError(f"unknown device {spec!r}; use local, qemu, or qemu:TARGET")


__all__ = ["CommandResult", "Device", "DeviceError", "open_device"]
