"""From argv to a checked config: the schemas and their ranges, composing, pre-flight, building ``_target_`` objects, and the words for what went wrong."""

from cifarx.lazy import lazy_exports

_PUBLIC = {
    "compose": "schema",
    "config_dir": "schema",
    "register_configs": "schema",
    "TrainConfig": "schema",
    "TTA": "schema",
    "instantiate": "build",
    "check_tree": "build",
    "check_arguments": "build",
    "target_of": "build",
    "preflight": "preflight",
    "preflight_sweep": "preflight",
    "sweep_variants": "preflight",
    "validate_common": "validate",
    "validate_train_config": "validate",
    "command_groups": "groups",
    "command_conf": "groups",
    "groups_help": "groups",
    "closest": "suggest",
    "known_keys": "suggest",
    "split_overrides": "overrides",
    "expand_paths": "overrides",
    "hydra_quote": "overrides",
    "unquote": "overrides",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
