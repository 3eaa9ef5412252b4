"""One call to seed every random number generator the training touches."""
from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, threads: int | None = 1) -> np.random.Generator:
    """Seed python, numpy and torch (if importable); pin torch to ``threads`` CPU threads.

    Returns a fresh numpy Generator derived from ``seed``.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch

        torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(int(threads))
        try:
            torch.use_deterministic_algorithms(True, warn_only=True)
        except Exception:
            pass
    except ImportError:
        pass
    return np.random.default_rng(seed)
