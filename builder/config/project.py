"""Every section a task reads, parsed in one pass into one frozen object.

The task's entry (builder/cli.py's `cli`) parses once and hands the result
down; the wiring and commands read it, never the raw configuration. Every
check of the configuration happens here, before anything is fetched. What
needs the task's flags is completed by the functions beside each part
(engine_for, vuln_db, publishing.destination, signing_choice, trust,
publish_arches); what needs a download (the end-of-life tables behind
images, config.with_eol) or the lock file (the gosu section, config.gosu)
is completed by the wiring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from builder import config
from builder.config import publishing
from builder.config.settings import EngineSettings, ImageSettings, LocalSettings, NssSettings, Pin, ToolSettings


@dataclass(frozen=True)
class ProjectSettings:
    images: ImageSettings          # end-of-life dates from distro-info's tables not filled in yet
    local: LocalSettings
    local_default_note: str        # what `release` says when local.default_releases changed a default
    tools: ToolSettings
    distro_info: tuple[str, Pin]   # the distro-info-data package and its pin
    nss_wrapper: NssSettings
    smoke_jobs: int
    engine: EngineSettings         # smoke.engine (config.engine_for applies --engine)
    store: Path                    # images.store: the content-addressed build store
    gosu: Mapping                  # the gosu section, read-only: the lock and the flags complete it
    vuln: config.VulnConfig
    publish: publishing.PublishConfig
    signing: publishing.SigningConfig
    ci_runners: tuple[tuple[str, str], ...]   # dpkg arch -> runner label
    ci_host: str                   # the arch whose runner emulates the rest


def parse(c_config) -> ProjectSettings:
    """The whole configuration, parsed and checked once; a ValueError names the first bad key."""
    runners, host = publishing.ci_runners(c_config)
    images = config.image_settings(c_config.images, c_config.local)
    return ProjectSettings(
        images=images,
        local=config.local_settings(c_config.local),
        local_default_note=config.local_default_note(c_config.images, images),
        tools=config.tool_settings(c_config),
        distro_info=config.distro_info_pin(c_config),
        nss_wrapper=config.nss_wrapper_settings(c_config),
        smoke_jobs=config.smoke_jobs(c_config.smoke),
        engine=config.engine_settings(c_config),
        store=config.project_path(c_config.images.get("store") or ".cache/images"),
        gosu=MappingProxyType(plain(c_config.gosu)),
        vuln=config.vuln_config(c_config),
        publish=publishing.publish_config(c_config),
        signing=publishing.signing_config(c_config),
        ci_runners=tuple(runners.items()),
        ci_host=host,
    )


def plain(node):
    """Invoke's configuration as plain dicts (its DataProxy is a mapping, not a dict)."""
    if hasattr(node, "items") and not isinstance(node, (str, bytes)):
        return {str(k): plain(v) for k, v in node.items()}
    return node
