"""Deployment targets, one TOML file each in the repository's ``targets/`` folder (installed as the
``edgebit_targets`` package, so a wheel carries them).

A target names the TVM target (JSON form), the cross toolchain prefix, the Debian architecture (for sysroots and
runtime libraries) and the qemu-user binary and CPU model that emulate it. Board names (``rpi4``, ``rpi5``,
``android-arm64``) are aliases. Adding a board is adding a file.
"""

from __future__ import annotations

import platform
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import edgebit_targets
from edgebit.errors import EdgebitError

TARGETS_DIR = Path(edgebit_targets.__file__).resolve().parent  # targets/ in the repository


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    debian_arch: str
    triple: str
    cross_prefix: str
    qemu: str
    qemu_cpu: str
    tvm: dict
    features: tuple[str, ...] = ()
    # g++ code generation flags for edgebit's C++ kernels (ops/*/kernel.h pick their AVX2 / AVX-512 VNNI / NEON /
    # sdot paths from them), shared by every runtime that compiles them (ONNX Runtime ops, ExecuTorch kernels)
    cflags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_host(self) -> bool:
        return not self.cross_prefix

    @property
    def cxx(self) -> str:
        return f"{self.cross_prefix}g++"

    def tvm_target_json(self) -> dict:
        return dict(self.tvm)


def _load(path: Path) -> Target:
    data = tomllib.loads(path.read_text())
    return Target(name=data["name"], description=data["description"], debian_arch=data["debian_arch"],
                  triple=data["triple"], cross_prefix=data.get("cross_prefix", ""), qemu=data.get("qemu", ""),
                  qemu_cpu=data.get("qemu_cpu", ""), tvm=data["tvm"], features=tuple(data.get("features", ())),
                  cflags=tuple(data.get("cflags", ())), aliases=tuple(data.get("aliases", ())))


def all_targets() -> dict[str, Target]:
    return {t.name: t for t in (_load(p) for p in sorted(TARGETS_DIR.glob("*.toml")))}


def resolve_target(name: str) -> Target:
    """A target by name or board alias; an unknown name is a user error listing the known ones."""
    targets = all_targets()
    for target in targets.values():
        if name == target.name or name in target.aliases:
            return target
    known = ", ".join(f"{t.name} ({', '.join(t.aliases)})" if t.aliases else t.name for t in targets.values())
    raise EdgebitError(f"unknown target {name!r}; known targets (aliases): {known}")


def host_debian_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64", "riscv64": "riscv64"}.get(platform.machine(), platform.machine())
