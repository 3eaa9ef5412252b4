"""Shared training machinery: config + hash, seeding, CSV logging, MLP + normalizer, ONNX export."""
from .config import (TrainConfig, config_sha256, load_params_file, load_train_config,
                     repo_root, resolve_path)
from .logging import CSVLogger
from .seeding import seed_everything

__all__ = ["TrainConfig", "config_sha256", "load_params_file", "load_train_config", "repo_root",
           "resolve_path", "CSVLogger", "seed_everything"]
