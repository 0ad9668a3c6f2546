"""From argv to a checked config: the schemas and their ranges, composing, pre-flight, building
``_target_`` objects, and the words for what went wrong."""

from cifarx.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "schema": ["config_dir", "register_configs", "TrainConfig", "TTA"],
    "composition": ["compose", "compose_quietly", "register_resolvers"],
    "build": ["instantiate", "check_tree", "check_arguments", "target_of"],
    "preflight": ["preflight", "preflight_sweep", "sweep_variants"],
    "validate": ["validate_common", "validate_train_config"],
    "groups": ["command_groups", "command_conf", "groups_help"],
    "suggest": ["closest"],
    "messages": ["describe_compose_error", "known_keys"],
    "overrides": ["split_overrides", "expand_paths", "hydra_quote", "unquote"],
})
