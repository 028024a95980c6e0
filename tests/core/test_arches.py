import pytest

from builder.core import arches


def test_nine_arches_of_gosu_1_19():
    assert arches.NAMES == ("amd64", "arm64", "armel", "armhf", "i386", "mips64el", "ppc64el", "riscv64", "s390x")


@pytest.mark.parametrize("dpkg,platform,alpine,machine", [
    ("amd64", "linux/amd64", "x86_64", 62),
    ("arm64", "linux/arm64/v8", "aarch64", 183),
    ("armel", "linux/arm/v5", None, 40),
    ("armhf", "linux/arm/v6", "armhf", 40),
    ("i386", "linux/386", "x86", 3),
    ("mips64el", "linux/mips64le", None, 8),
    ("ppc64el", "linux/ppc64le", "ppc64le", 21),
    ("riscv64", "linux/riscv64", "riscv64", 243),
    ("s390x", "linux/s390x", "s390x", 22),
])
def test_table(dpkg, platform, alpine, machine):
    a = arches.get(dpkg)
    assert (str(a.platform), a.alpine, a.elf_machine) == (platform, alpine, machine)
    assert arches.get(platform) is a


def test_armhf_also_serves_arm_v7():
    assert arches.get("linux/arm/v7").dpkg == "armhf"


def test_only_s390x_is_big_endian_and_32_bit_ones_are_32_bit():
    assert [a.dpkg for a in arches.ARCHES if a.elf_data == arches.ELFDATA2MSB] == ["s390x"]
    assert {a.dpkg for a in arches.ARCHES if a.elf_class == arches.ELFCLASS32} == {"armel", "armhf", "i386"}


def test_other_spellings_resolve():
    assert arches.get("x86_64").dpkg == "amd64"
    assert arches.get("aarch64").dpkg == "arm64"
    assert arches.get("linux/arm64/v8").dpkg == "arm64"


def test_parse_list_dedups_and_rejects_unknown():
    assert [a.dpkg for a in arches.parse_list("arm64,aarch64,amd64")] == ["arm64", "amd64"]
    assert len(arches.parse_list(None)) == 9
    with pytest.raises(arches.UnknownArch, match="unknown architecture 'sparc'.*use one of amd64"):
        arches.parse_list("amd64,sparc")
    with pytest.raises(arches.UnknownArch, match="empty"):
        arches.parse_list(",")


def test_armv7_is_an_image_arch_served_by_gosu_armhf():
    armv7 = arches.get("armv7", arches.IMAGE_ARCHES)
    assert (armv7.gosu, str(armv7.platform), armv7.alpine, armv7.release_file) == (
        "armhf", "linux/arm/v7", "armv7", "gosu-armhf")
    assert "armv7" not in arches.NAMES, "gosu publishes no armv7 file: fetch must not ask for one"
    with pytest.raises(arches.UnknownArch):
        arches.get("armv7")
    assert arches.get("armhf", arches.IMAGE_ARCHES).gosu == "armhf"


def test_parse_platform():
    assert arches.parse_platform("linux/arm/v7") == arches.Platform("linux", "arm", "v7")
    for bad in ("linux", "linux//v7", "a/b/c/d"):
        with pytest.raises(arches.UnknownArch, match="os/architecture"):
            arches.parse_platform(bad)
