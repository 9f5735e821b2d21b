"""Emulated boards (qemu-system with a Debian kernel and a small initramfs) that speak SSH and adb like a real
board or phone: ``edgebit vm start arm64``. Files in :mod:`edgebit.boards.image`, processes in
:mod:`edgebit.boards.vm`, commands in :mod:`edgebit.boards.cli`."""
