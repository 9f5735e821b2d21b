"""An emulated device: qemu-user runs the target's binaries on this machine, with a sysroot of the target's C and
C++ runtime libraries built from Debian packages (edgebit.provision). Files live on the host file system, so push
and pull are local copies, as with the local device.

qemu-user 10 (bookworm-backports) is used, not Debian 12's 7.2, which crashes on RVV instructions TVM emits.
"""

from __future__ import annotations

from edgebit import provision
from edgebit.devices.local import LocalDevice
from edgebit.targets import Target


class QemuDevice(LocalDevice):
    def __init__(self, target: Target):
        super().__init__()
        if not target.qemu:
            raise ValueError(f"target {target.name} runs natively; use the local device")
        self.target = target
        self.name = f"qemu:{target.name}"
        self.debian_arch = target.debian_arch
        self.emulator = provision.qemu_binary(target.qemu)
        self.sysroot = provision.sysroot(target.debian_arch, target.triple)

    def command_prefix(self) -> list[str]:
        return [str(self.emulator), "-cpu", self.target.qemu_cpu, "-L", str(self.sysroot)]
