"""An Android phone (or any adbd) over adb: ``adb`` (the only device), ``adb:SERIAL``, or ``adb:HOST:PORT``
(connected over TCP first).

Uses the ``adb`` client from Debian's ``adb`` package and whatever adb server the user runs
(``$ANDROID_ADB_SERVER_PORT`` is honoured). Files go to ``/data/local/tmp/edgebit-<id>/`` (the one place
``adb shell`` may execute files), commands run through ``adb shell`` with the shell v2 protocol (exit status and
stderr kept apart), and the directory is removed at the end.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from edgebit.devices.base import DeviceError, DeviceKind, run_process
from edgebit.devices.remote import CONNECT_TIMEOUT_S, COPY_TIMEOUT_S, RemoteDevice
from edgebit.errors import EdgebitError

BASE_DIR = "/data/local/tmp"
PROBLEMS = (
    (r"device '?[^ ]*'? not found|device offline|no devices/emulators found|device still connecting",
     "the device is not connected (any more); check the cable or `adb connect`, then `adb devices`"),
    (r"unauthorized", "the device has not authorized this computer; accept the prompt on the phone"),
    (r"No space left on device", "the device's storage is full; free some space"),
    (r"protocol fault|connection reset|closed", "the adb connection was lost; reconnect the device and try again"),
)


def parse_spec(spec: str) -> str | None:
    """``adb`` -> None (the only device), ``adb:SERIAL`` or ``adb:HOST:PORT`` -> the serial."""
    if spec == "adb":
        return None
    serial = spec.partition(":")[2]
    if not serial:
        raise EdgebitError(f"device {spec!r}: expected adb, adb:SERIAL or adb:HOST:PORT")
    return serial


def _adb(args: list[str], timeout: float, on_line=None) -> subprocess.CompletedProcess:
    return run_process(["adb", *args], timeout, on_line=on_line)


def _connected_serials() -> list[str]:
    result = _adb(["devices"], CONNECT_TIMEOUT_S)
    lines = result.stdout.decode(errors="replace").splitlines()[1:]
    return [line.split()[0] for line in lines if line.strip() and line.split()[-1] == "device"]


class AdbDevice(RemoteDevice):
    base_dir = BASE_DIR

    def __init__(self, spec: str):
        if shutil.which("adb") is None:
            raise EdgebitError("the adb client is not installed; apt-get install adb")
        serial = parse_spec(spec)
        try:
            if serial is not None and re.fullmatch(r"[\w.-]+:\d+", serial):
                connected = _adb(["connect", serial], CONNECT_TIMEOUT_S).stdout.decode(errors="replace")
                if "connected" not in connected:
                    raise DeviceError(f"adb:{serial}: cannot connect ({connected.strip() or 'no answer'}); check "
                                      "that adbd listens there")
            serials = _connected_serials()
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{spec}: the adb server did not answer; run `adb kill-server` and try again") from None
        if serial is None:
            if len(serials) != 1:
                which = ", ".join(serials) if serials else "none is connected"
                raise DeviceError(f"adb: {len(serials)} devices connected ({which}); choose one with adb:SERIAL")
            serial = serials[0]
        elif serial not in serials:
            known = ", ".join(serials) or "none"
            raise DeviceError(f"adb:{serial}: no such device (connected: {known}); check `adb devices`")
        self.serial = serial
        self.name = f"adb:{serial}"
        super().__init__()

    def _transport(self, args, timeout, stdin=None, on_line=None):
        return _adb(args, timeout, on_line)

    def _shell_args(self, command: str) -> list[str]:
        return ["-s", self.serial, "shell", command]

    def _copy(self, args: list[str], what: str) -> None:
        result = _adb(["-s", self.serial, *args], COPY_TIMEOUT_S)
        if result.returncode != 0:
            output = (result.stderr + result.stdout).decode(errors="replace")
            problem = self._transport_error(1, output) or (output.strip().splitlines() or ["failed"])[-1]
            raise DeviceError(f"{self.describe()}: {what} failed: {problem}")

    def _send(self, local: Path, remote: str) -> None:
        self._copy(["push", str(local), remote], f"copying {local.name} to the device")

    def _fetch(self, remote: str, local: Path) -> None:
        self._copy(["pull", remote, str(local)], f"fetching {Path(remote).name}")

    def _transport_error(self, returncode: int, stderr: str) -> str | None:
        """adb's own failures print "adb: error: ..." or "error: ..." lines; the command's stderr is its own."""
        if returncode == 0:
            return None
        own = [line for line in stderr.splitlines() if line.startswith(("adb: error", "error:", "adb: failed"))]
        for line in own or ([stderr] if returncode in (1, 255) and "No space left" in stderr else []):
            for pattern, message in PROBLEMS:
                if re.search(pattern, line, re.IGNORECASE):
                    return message
            return line.strip()
        return None


KIND = DeviceKind("adb", "adb, adb:SERIAL or adb:HOST:PORT", "an Android device or adbd over adb",
                  lambda spec: spec == "adb" or spec.startswith("adb:"), lambda spec, bundle_target: AdbDevice(spec))
