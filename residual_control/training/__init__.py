"""Training of residual policies (BC and RL), ONNX export, evaluation and benchmarks.

Heavy dependencies (torch, gymnasium, stable-baselines3, mujoco) are imported
lazily by the submodules that need them, so ``import residual_control.training``
stays cheap. Entry points for the command line are in :mod:`.cli`.
"""
