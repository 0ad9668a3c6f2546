"""Composing a command's config as the CLI does: cifarx's schemas registered and its resolvers on."""

from __future__ import annotations

from omegaconf import OmegaConf

from cifarx.config.groups import command_conf, groups_help
from cifarx.config.overrides import job_dirname
from cifarx.config.schema import config_dir, register_configs
from cifarx.process import run_dir_suffix


def register_resolvers() -> None:
    """cifarx's schemas in Hydra's ConfigStore and its resolvers in OmegaConf (``${cifarx_groups:}``
    and ``${cifarx_conf:}`` for --help, ``${cifarx_varying:}`` and ``${cifarx_pid:}`` in run directory
    names); idempotent."""
    register_configs()
    if not OmegaConf.has_resolver("cifarx_groups"):
        OmegaConf.register_new_resolver("cifarx_groups", groups_help)
    if not OmegaConf.has_resolver("cifarx_conf"):
        OmegaConf.register_new_resolver("cifarx_conf", command_conf)
    if not OmegaConf.has_resolver("cifarx_varying"):
        OmegaConf.register_new_resolver("cifarx_varying", job_dirname)
    if not OmegaConf.has_resolver("cifarx_pid"):
        OmegaConf.register_new_resolver("cifarx_pid", run_dir_suffix, use_cache=True)


def compose(command: str, overrides: list[str], hydra_config: bool = False):
    """The real config, composed as the CLI does (schemas registered, resolvers on); with
    ``hydra_config`` its ``hydra`` node too."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=command):
        return hydra_compose(config_name=command, overrides=overrides, return_hydra_config=hydra_config)


def compose_quietly(command: str, overrides: list[str]):
    """The command's config with these overrides, or None when they do not compose."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra

    try:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra job: its config search path is this one
            register_resolvers()
            return hydra_compose(config_name=command, overrides=overrides)
        return compose(command, overrides)
    except Exception:
        return None
