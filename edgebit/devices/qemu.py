"""An emulated device: qemu-user runs the target's binaries on this machine. Bundles carry their own loader and
C/C++ runtime, so no sysroot is given to qemu. Files live on the host file system, so push
and pull are local copies, as with the local device.

qemu-user 10 (bookworm-backports) is used, not Debian 12's 7.2, which crashes on RVV instructions TVM emits.
"""

from __future__ import annotations

from edgebit.toolchain import provision
from edgebit.devices.base import DeviceKind
from edgebit.devices.local import LocalDevice
from edgebit.errors import EdgebitError
from edgebit.targets import Target, resolve_target


class QemuDevice(LocalDevice):
    def __init__(self, target: Target):
        super().__init__()
        if not target.qemu:
            raise ValueError(f"target {target.name} runs natively; use the local device")
        self.target = target
        self.name = f"qemu:{target.name}"
        self.debian_arch = target.debian_arch
        self.emulator = provision.qemu_binary(target.qemu)

    def command_prefix(self) -> list[str]:
        """No ``-L`` sysroot: a bundle carries its own loader and C runtime (edgebit.toolchain.c_runtime)."""
        return [str(self.emulator), "-cpu", self.target.qemu_cpu]


def open_qemu(spec: str, bundle_target: str | None) -> QemuDevice:
    """``qemu`` emulates the bundle's target, ``qemu:TARGET`` the named one."""
    name = spec.partition(":")[2] or bundle_target
    if not name:
        raise EdgebitError("--device qemu needs a bundle or a target: use qemu:TARGET (e.g. qemu:arm64)")
    target = resolve_target(name)
    if not target.qemu:
        raise EdgebitError(f"target {target.name} is the host: use --device local")
    return QemuDevice(target)


KIND = DeviceKind("qemu", "qemu or qemu:TARGET", "emulates the bundle's target, or TARGET, with qemu-user",
                  lambda spec: spec == "qemu" or spec.startswith("qemu:"), open_qemu)
