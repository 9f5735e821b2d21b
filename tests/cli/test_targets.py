"""Targets load from targets/*.toml, board aliases resolve, unknown names fail clearly."""

import json

import pytest

from cli_helpers import assert_user_error, run_cli
from edgebit.errors import EdgebitError
from edgebit.targets import all_targets, resolve_target


def test_every_target_names_a_json_tvm_target_and_toolchain():
    targets = all_targets()
    assert set(targets) >= {"x86_64", "arm64", "arm64-dotprod", "riscv64"}
    for target in targets.values():
        assert target.tvm["kind"] == "llvm" and target.tvm["mtriple"] == target.triple
        assert target.tvm.get("mcpu") not in (None, "native")  # "native" silently builds generic code
        assert target.is_host == (target.qemu == "")


@pytest.mark.parametrize("alias,name", [("rpi4", "arm64"), ("rpi5", "arm64-dotprod"),
                                        ("android-arm64", "arm64-dotprod"), ("riscv64", "riscv64")])
def test_board_aliases(alias, name):
    assert resolve_target(alias).name == name


def test_dotprod_and_rvv_are_switched_on_in_the_tvm_targets():
    assert "+dotprod" in resolve_target("rpi5").tvm["mattr"]
    assert "+dotprod" not in resolve_target("rpi4").tvm["mattr"]
    assert "+v" in resolve_target("riscv64").tvm["mattr"]


def test_unknown_target_is_a_user_error():
    with pytest.raises(EdgebitError, match="known targets"):
        resolve_target("sparc")
    assert_user_error(run_cli("export", "demo", "--target", "sparc"), "unknown target")


def test_cli_lists_targets():
    listed = json.loads(run_cli("targets", "--json", check=True).stdout)
    assert listed["arm64-dotprod"]["aliases"] == ["rpi5", "android-arm64"]
