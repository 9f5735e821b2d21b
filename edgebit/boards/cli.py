"""``edgebit vm``: start, list and stop emulated boards that speak SSH and adb."""

from __future__ import annotations

import json
from typing import Optional

import typer

vm_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                     help="Emulated boards (qemu-system) reachable over SSH and adb, for testing device deploys.")


@vm_app.command("start")
def start(arch: str = typer.Argument(..., help="board architecture: arm64 (aarch64)"),
          name: Optional[str] = typer.Option(None, "--name", help="board name (default: ARCH-N)"),
          memory: int = typer.Option(1024, "--memory", min=256, help="guest memory in MiB"),
          cpus: int = typer.Option(2, "--cpus", min=1, help="guest CPUs"),
          timeout: float = typer.Option(180.0, "--timeout", min=1, help="seconds to wait for SSH"),
          as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Boot a board (fetches its kernel, userland and qemu from Debian on first use) and print how to reach it."""
    from edgebit.boards import vm

    board = vm.start(arch, name=name, memory_mb=memory, cpus=cpus, timeout_s=timeout)
    print(json.dumps(board.summary()) if as_json else vm.specs_text(board))


@vm_app.command("stop")
def stop(name: str = typer.Argument(..., help="board name (see: edgebit vm list)")) -> None:
    """Stop a board and remove its keys and state."""
    from edgebit.boards import vm

    vm.stop(name)
    print(f"stopped {name}")


@vm_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Running boards (boards whose qemu is gone are forgotten)."""
    from edgebit.boards import vm

    boards = vm.list_boards()
    if as_json:
        print(json.dumps([b.summary() for b in boards], indent=2))
        return
    if not boards:
        print("no boards running")
    for b in boards:
        print(f"{b.name}\t{b.arch}\tpid {b.pid}\t{b.ssh}\t{b.adb}\t{b.ssh_config}")
