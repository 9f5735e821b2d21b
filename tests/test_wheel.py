"""edgebit installs as a package: the wheel built from this checkout, installed into a fresh virtual environment
(its dependencies reused from the project's .venv through a .pth line, edgebit itself only from the wheel), runs
`edgebit targets` and `edgebit export demo -t arm64` from a directory outside the repository, and the bundle's
manifest says what was built. Catches package data (demo models, targets, C++ sources, ops) missing from the wheel."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.cross]  # builds a wheel and cross-compiles for arm64


def _source_copy(destination: Path) -> Path:
    """The checkout's files (tracked and untracked, not ignored), so the build leaves nothing in the repository."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = REPO / relative
        if source.is_file():
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / relative)
    return destination


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    source = _source_copy(root / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((root / "dist").glob("edgebit-*.whl"))
    env_dir = root / "env"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies, not edgebit: a plain path line does not run .venv's own .pth files (its editable install).
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    return wheel, env_dir, root


def run_installed(env_dir, cwd, *args):
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(env_dir / "bin" / "edgebit"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env=environment)


def test_wheel_carries_the_package_data(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("edgebit/demo/bitnet-demo/model.safetensors", "edgebit/demo/bitnet-demo/tokenizer.json",
                     "edgebit/demo/bimamba-demo/config.json", "edgebit/demo/heldout.txt",
                     "edgebit_targets/arm64.toml", "edgebit_targets/x86_64.toml",
                     "edgebit_ops/ternary_matmul/SPEC.md", "edgebit_ops/ternary_matmul/tvm_kernel.py",
                     "edgebit/runtimes/runner_driver.h"):
        assert required in names, required
    assert not any(name.startswith(("tests/", "ops/", "targets/")) for name in names)


def test_installed_modules_come_from_the_environment(installed):
    _, env_dir, root = installed
    where = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import edgebit, edgebit_ops, edgebit_targets; "
                            "print(edgebit.__file__, edgebit_ops.__file__, edgebit_targets.__file__)"],
                           cwd=root, capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(str(env_dir)) for path in where), where


def test_installed_targets(installed):
    _, env_dir, root = installed
    result = run_installed(env_dir, root, "targets", "--json")
    assert result.returncode == 0, result.stderr
    assert {"x86_64", "arm64", "arm64-dotprod", "riscv64"} <= set(json.loads(result.stdout))


def test_installed_export_demo_for_arm64(installed):
    _, env_dir, root = installed
    work = root / "outside"
    work.mkdir()
    result = run_installed(env_dir, work, "export", "demo", "-t", "arm64", "-o", "B", "--max-seq-len", 32)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((work / "B" / "manifest.json").read_text())
    assert manifest["target"]["name"] == "arm64" and list(manifest["runtimes"]) == ["tvm"]
    assert manifest["model"]["family"] == "bitnet" and manifest["model"]["max_seq_len"] == 32
    assert "tokenizer.json" in manifest["files"]
    for relative in manifest["files"]:
        assert (work / "B" / relative).is_file(), relative
