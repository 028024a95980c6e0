"""The step about to run a foreign arch switches its qemu handler on, and says so."""

import io

import pytest

from builder.core import emulation


def _binfmt(tmp_path, **entries):
    (tmp_path / "status").write_text("enabled\n")
    for name, state in entries.items():
        (tmp_path / f"qemu-{name}").write_text(f"{state}\ninterpreter /usr/libexec/qemu-binfmt/{name}-binfmt-P\n")
    return tmp_path


def test_foreign_arches_of_an_amd64_host():
    assert emulation.foreign(["amd64", "i386", "arm64", "armhf", "armv7", "arm64"], "amd64") == ["arm64", "armhf", "armv7"]
    assert emulation.foreign(["amd64", "arm64"], "arm64") == ["amd64"]


def test_a_disabled_handler_is_enabled_and_named(tmp_path):
    root = _binfmt(tmp_path, riscv64="disabled", aarch64="enabled")
    log = io.StringIO()
    # A real handler file takes "1" and then reads "enabled"; a plain file just keeps the "1".
    got = emulation.ensure(["amd64", "arm64", "riscv64"], log, "smoke", root=root) if emulation.native_arch() == "amd64" \
        else pytest.skip("the arch lists assume an amd64 host")
    assert got == ["riscv64"]
    assert (root / "qemu-riscv64").read_text() == "1"
    assert log.getvalue() == "emulation: enabled qemu binfmt handler(s) qemu-riscv64 for smoke\n"


def test_nothing_to_do_costs_nothing_and_says_nothing(tmp_path):
    root = _binfmt(tmp_path, aarch64="enabled", arm="enabled")
    log = io.StringIO()
    assert emulation.ensure(["arm64", "armhf", "armv7", emulation.native_arch()], log, "smoke", root=root) == [] \
        or emulation.native_arch() != "amd64"
    assert log.getvalue() == ""


def test_an_unregistered_handler_without_an_installer_says_what_to_do(tmp_path):
    if emulation.native_arch() != "amd64":
        pytest.skip("the arch lists assume an amd64 host")
    root = _binfmt(tmp_path)
    with pytest.raises(emulation.EmulationError, match=r"smoke needs qemu for s390x.*run `invoke up`"):
        emulation.ensure(["s390x"], io.StringIO(), "smoke", root=root, formats=tmp_path / "none")


def test_real_handlers_of_this_machine_are_on_after_ensure():
    """On the real binfmt_misc (root, qemu-user-static installed): the handler reads enabled afterwards."""
    if not (emulation.FORMATS / "qemu-s390x").exists():
        pytest.skip("qemu-user-static is not installed here (invoke up installs it)")
    emulation.ensure(["s390x"], io.StringIO(), "test")
    assert emulation.enabled("s390x")
