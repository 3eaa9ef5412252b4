"""Shared training machinery: typed configs + hash, seeding, CSV logging, MLP + normalizer, ONNX export."""
from .config import (BCTrainConfig, RLTrainConfig, TrainConfig, config_sha256, load_params_file, load_section,
                     load_train_config, repo_root, resolve_path)
from .logging import CSVLogger
from .seeding import seed_everything

__all__ = ["BCTrainConfig", "RLTrainConfig", "TrainConfig", "config_sha256", "load_params_file", "load_section",
           "load_train_config", "repo_root", "resolve_path", "CSVLogger", "seed_everything"]
