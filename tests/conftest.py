import os

# transformers' BitNet integration wraps helpers in torch.compile; eager mode is what we compare against.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest

# Module fixtures that export bundles or models, or build C++ libraries: a test using one is slow, wherever it is.
SLOW_FIXTURES = {"bundle", "bundles", "exported", "exports", "e2e", "step_runtime", "library", "runtime_dir"}


def _targets():
    from edgebit.targets import all_targets

    targets = all_targets()
    return {alias: t for t in targets.values() for alias in (t.name, *t.aliases)}


def pytest_collection_modifyitems(config, items):
    """Markers a test earns from what it takes, so new tests need no decorator to be sorted right:

    * ``cross``: a parameter names a target of another architecture (arm64, riscv64, a board alias);
    * ``qemu``: a parameter is the device ``qemu`` (``qemu:arm64``), or the test looks a foreign target up in a
      module-level ``*DEVICES`` map (name -> device) that sends it to ``qemu``;
    * ``slow``: cross or qemu, or it uses a fixture of SLOW_FIXTURES (exports a bundle, builds a library).
    """
    targets = _targets()
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        values = [v for v in params.values() if isinstance(v, str)]
        foreign = [v for v in values if v in targets and not targets[v].is_host]
        function = getattr(item, "function", None)
        names = set(getattr(getattr(function, "__code__", None), "co_names", ()))
        device_maps = [getattr(item.module, n) for n in names if n.endswith("DEVICES")
                       and isinstance(getattr(item.module, n, None), dict)] if item.module else []
        if any(v == "qemu" or v.startswith("qemu:") for v in values) or any(
                m.get(v) == "qemu" for m in device_maps for v in foreign):
            item.add_marker(pytest.mark.qemu)
        if foreign or item.get_closest_marker("qemu"):
            item.add_marker(pytest.mark.cross)
        defined = set(getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}))
        if item.get_closest_marker("cross") or defined & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
