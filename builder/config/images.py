"""The images section: every flavor's releases as ImageSettings, end-of-life dates filled in once the tables
are at hand (with_eol), and the defaults local.default_releases picks where bases come through the local
registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from builder.core import arches
from builder.config import eol as eol_mod
from builder.config.settings import Flavor, ImageSettings, Pin
from builder.config.values import flag


def standins_mode(value) -> str:
    """images.use_standins: auto, or a strict yes/no."""
    if str(value).strip().lower() == "auto":
        return "auto"
    try:
        return "true" if flag(value, "images.use_standins") else "false"
    except ValueError:
        raise ValueError(f"images.use_standins is {value!r}: use auto, true or false") from None


def flavor_platforms(flavor: str, spec: str) -> tuple[tuple[str, "arches.Platform"], ...]:
    """images.flavors.<flavor>.platforms: 'armhf=linux/arm/v7,...', where the base differs from the arch's own."""
    out = []
    for item in (i.strip() for i in str(spec).split(",") if i.strip()):
        name, sep, platform = item.partition("=")
        if not sep:
            raise ValueError(f"images.flavors.{flavor}.platforms: {item!r} is not ARCH=PLATFORM, e.g. armhf=linux/arm/v7")
        try:
            out.append((arches.get(name, arches.IMAGE_ARCHES).dpkg, arches.parse_platform(platform)))
        except arches.UnknownArch as e:
            raise ValueError(f"images.flavors.{flavor}.platforms: {e}") from None
    return tuple(out)


def image_settings(images: Mapping, local: Mapping | None = None, distro_info=None, today=None) -> ImageSettings:
    """images.*: every flavor's releases. `distro_info` (eol.DistroInfo): the tables Debian's and Ubuntu's
    end-of-life dates come from (None: not looked up, those releases' dates stay unknown). `today`: a default
    release past its end of life is refused. `local` (the local section): when bases come through the local
    registry, local.default_releases picks the defaults there (the releases that can be seeded here)."""
    return with_eol(_image_settings(images, local), distro_info, today)


def _image_settings(images: Mapping, local: Mapping | None) -> ImageSettings:
    local_defaults = _local_defaults(images, local)
    releases = {name: _releases(name, f, local_defaults.get(name)) for name, f in images["flavors"].items()}
    return ImageSettings(
        repository=images["repository"], flavors={}, base_mirror=images["base_mirror"],
        use_standins=standins_mode(images["use_standins"]), ops_user=images["ops_user"],
        ops_uid=int(images["ops_uid"]), ops_gid=int(images["ops_gid"]), source_url=images["source_url"],
        releases=releases, eol_from={name: str(f["eol_from"]) for name, f in images["flavors"].items()
                                     if f.get("eol_from")},
        local_defaults=local_defaults,
    )


def with_eol(settings: ImageSettings, distro_info=None, today=None) -> ImageSettings:
    """The releases' end-of-life dates from distro-info's tables (where a flavor names eol_from and the
    release no date of its own), the defaults picked, and a default past its end of life refused."""
    releases = {}
    for name, rels in settings.releases.items():
        spec = settings.eol_from.get(name)
        releases[name] = {
            release: dataclasses.replace(r, eol=_looked_up(distro_info, spec, release, name))
            if r.eol is None and spec and distro_info is not None else r
            for release, r in rels.items()}
    flavors = {name: next(r for r in rels.values() if r.default) for name, rels in releases.items()}
    for name, chosen in flavors.items():
        if today is not None and name not in settings.local_defaults and chosen.eol and chosen.eol.past(today):
            raise ValueError(f"images.flavors.{name}.default is {chosen.release!r}, which reached its end of life on "
                             f"{chosen.eol.date} ({chosen.eol.source}): make a supported release the default")
    return dataclasses.replace(settings, flavors=flavors, releases=releases)


def _looked_up(distro_info, spec: str, release: str, name: str):
    try:
        return eol_mod.lookup(distro_info, spec, release, f"images.flavors.{name}.eol_from")
    except eol_mod.EolError as e:
        raise ValueError(str(e)) from None


def _local_defaults(images: Mapping, local: Mapping | None) -> dict[str, str]:
    """local.default_releases (FLAVOR=RELEASE,...), when images.base_mirror is the local registry."""
    if local is None:
        return {}
    port = int(local["registry_port"])
    if str(images.get("base_mirror") or "").rstrip("/") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
        return {}
    out = {}
    for item in (i.strip() for i in str(local.get("default_releases") or "").split(",") if i.strip()):
        name, sep, release = item.partition("=")
        if not sep or not release.strip():
            raise ValueError(f"local.default_releases: {item!r} is not FLAVOR=RELEASE, e.g. alpine=3.20")
        out[name.strip()] = release.strip()
    return out


def _releases(name: str, f: Mapping, local_default: str | None) -> dict:
    """images.flavors.<name>.releases, each a Flavor (the flavor at that release), in configuration order."""
    key = f"images.flavors.{name}"
    rels = f.get("releases") or {}
    if not rels:
        raise ValueError(f"{key}.releases is empty: list at least one release (base, arches, ...)")
    default = str(f.get("default") or "")
    for which, value in ((f"{key}.default", default), ("local.default_releases", local_default)):
        if value is not None and value not in {str(r) for r in rels}:
            raise ValueError(f"{which} is {value!r}, which is not one of {key}.releases: "
                             f"{', '.join(str(r) for r in rels)}")
    out = {}
    for release, r in rels.items():
        release, rkey = str(release), f"{key}.releases.{release}"
        spec = ",".join(a.strip() for a in str(r.get("arches") or "").split(",") if a.strip())
        if not spec:
            raise ValueError(f"{rkey}.arches is empty: list the arches its base is published for")
        try:
            listed = tuple(a.dpkg for a in arches.parse_list(spec, table=arches.IMAGE_ARCHES))
        except arches.UnknownArch as e:
            raise ValueError(f"{rkey}.arches: {e}") from None
        try:
            eol = eol_mod.Eol(eol_mod.parse_date(r["eol"], f"{rkey}.eol"),
                              str(r.get("eol_source") or f"{rkey}.eol")) if r.get("eol") else None
        except eol_mod.EolError as e:
            raise ValueError(str(e)) from None
        if not r.get("base"):
            raise ValueError(f"{rkey}.base is empty: give the release's upstream reference, e.g. alpine:3.20")
        out[release] = Flavor(name, r["base"], r.get("standin") or "", r.get("digest") or "", release, listed,
                              flavor_platforms(f"{name}.releases.{release}", r.get("platforms") or ""), eol,
                              release == (local_default or default))
    return out


def distro_info_pin(c_config) -> tuple[str, Pin]:
    """tools.distro_info: the distro-info-data package and its pin (version, .deb sha256; arch all)."""
    spec = c_config.tools["distro_info"]
    pin = spec["pins"]["all"]
    return str(spec["package"]), Pin(str(pin["version"]), str(pin["deb_sha256"]).lower())


def local_default_note(images: Mapping, settings: ImageSettings) -> str:
    """What `release` says when local.default_releases changed a default ("" when none did); `settings` is
    the images section parsed, with the local defaults it took."""
    flavors = images["flavors"]
    notes = [f"{name} {release} (configured default {flavors[name].get('default')})"
             for name, release in settings.local_defaults.items()
             if name in flavors and release != str(flavors[name].get("default"))]
    return ("local defaults (local.default_releases, the releases that can be seeded here): " + ", ".join(notes)
            if notes else "")
