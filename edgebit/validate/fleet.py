"""One bundle on several devices at once (``--device`` repeated): a Pi 4, a Pi 5 and a phone checked in one go.

Each device gets its own session (push, run, clean up) in its own thread; the work is mostly waiting on the device,
so the wall time is about the slowest device's, not the sum.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from edgebit.bundle import Bundle
from edgebit.errors import EdgebitError


@dataclass
class DeviceOutcome:
    spec: str
    where: str  # the device as it describes itself (spec when it could not be opened)
    value: Any = None
    error: EdgebitError | None = None
    started: float = 0.0  # time.monotonic() around the device's session
    finished: float = 0.0


def on_devices(bundle: Bundle, specs: list[str], work: Callable, threads: int = 1,
               timeout: float | None = None) -> list[DeviceOutcome]:
    """Run ``work(session)`` on each device in ``specs`` (a device named twice runs once) in parallel; a device's
    user error is kept in its outcome (the others go on), anything else propagates."""
    from edgebit.devices import RUN_TIMEOUT_S, open_device
    from edgebit.validate.session import DeviceSession

    specs = list(dict.fromkeys(specs))

    def one(spec: str) -> DeviceOutcome:
        started = time.monotonic()
        try:
            device = open_device(spec, bundle.target)
            with DeviceSession(bundle, device, threads=threads, timeout=timeout or RUN_TIMEOUT_S) as session:
                value = work(session)
            return DeviceOutcome(spec, device.describe(), value, None, started, time.monotonic())
        except EdgebitError as exc:
            return DeviceOutcome(spec, spec, error=exc, started=started, finished=time.monotonic())

    if len(specs) == 1:
        return [one(specs[0])]
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        return list(pool.map(one, specs))
