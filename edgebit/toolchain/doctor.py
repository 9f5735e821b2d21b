"""``edgebit doctor``: every external tool edgebit uses, whether it is here, and the command that installs it."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass

from edgebit.targets import all_targets


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _tool(binary: str, package: str, purpose: str) -> Check:
    path = shutil.which(binary)
    return Check(binary, path is not None, path or f"missing ({purpose})", f"apt-get install -y {package}")


def missing_tool_message(binary: str) -> str:
    """One line for an error: what is missing and how to install it."""
    for check in checks():
        if check.name == binary:
            return f"{binary} is not installed; install it with: {check.fix}"
    return f"{binary} is not installed"


def checks() -> list[Check]:
    found = [_tool("g++", "g++", "host runner build"), _tool("apt-get", "apt", "fetching qemu and sysroots"),
             _tool("dpkg-deb", "dpkg", "unpacking Debian packages")]
    seen = set()
    for target in all_targets().values():
        if target.cross_prefix and target.cross_prefix not in seen:
            seen.add(target.cross_prefix)
            package = f"g++-{target.triple.replace('_', '-')}"
            found.append(_tool(target.cxx, package, f"cross compiling for {target.name}"))
            found.append(_tool(f"{target.cross_prefix}objdump", f"binutils-{target.triple.replace('_', '-')}",
                               f"checking {target.name} instructions"))
    for module, package in (("tvm", "apache-tvm==0.27.0.post1"), ("tvm_ffi", "apache-tvm-ffi")):
        present = importlib.util.find_spec(module) is not None
        found.append(Check(f"python:{module}", present, "importable" if present else "missing",
                           f".venv/bin/pip install {package}"))
    from edgebit.toolchain import provision

    qemu_root = provision.cache_dir() / "qemu-user-10"
    found.append(Check("qemu-user 10", True, str(qemu_root) if qemu_root.exists() else
                       "fetched from Debian bookworm-backports on first emulated run", ""))
    # Emulated boards (edgebit vm) and ssh:// / adb devices
    for binary, package, purpose in (("ssh", "openssh-client", "ssh:// devices and edgebit vm boards"),
                                     ("ssh-keygen", "openssh-client", "edgebit vm board keys"),
                                     ("adb", "adb", "adb devices and edgebit vm boards")):
        if not any(check.name == binary for check in found):
            found.append(_tool(binary, package, purpose))
    boards_qemu = sorted((provision.cache_dir() / "boards").glob("qemu-system-aarch64-*/usr/bin/qemu-system-aarch64"))
    found.append(Check("qemu-system-aarch64", True, str(boards_qemu[-1]) if boards_qemu else
                       "fetched from Debian bookworm on first 'edgebit vm start arm64'", ""))
    return found
