"""The residual network: fixed observation normaliser -> MLP -> tanh * residual_limit.

The same structure is trained by BC, filled from an SB3 SAC actor for RL, and
written to ONNX by :mod:`.onnx_export`, so the exported graph is exactly this
module (normalisation and the output bound live inside the graph).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .config import NetworkConfig

#: Normalised observations are clamped to +-OBS_CLIP (keeps huge inputs finite).
OBS_CLIP = 10.0
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


class Normalizer(nn.Module):
    """y = clip((x - mean) / std, -clip, clip) with fixed (buffer) statistics."""

    def __init__(self, n: int, clip: float = OBS_CLIP) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.clip = float(clip)

    @torch.no_grad()
    def fit(self, data: np.ndarray, min_std: float = 1e-3) -> "Normalizer":
        data = np.asarray(data, dtype=np.float64)
        self.mean.copy_(torch.as_tensor(data.mean(0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(data.std(0), min_std), dtype=torch.float32))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / self.std, -self.clip, self.clip)


def mlp(n_in: int, hidden: Sequence[int], n_out: int, activation: str = "relu") -> nn.Sequential:
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    last = n_in
    for h in hidden:
        layers += [nn.Linear(last, int(h)), act()]
        last = int(h)
    layers.append(nn.Linear(last, n_out))
    return nn.Sequential(*layers)


class ResidualPolicyNet(nn.Module):
    """obs [B, n_obs] -> residual [B, n_joints] in N m, |residual_i| < residual_limit_i."""

    def __init__(self, n_obs: int, residual_limit: Sequence[float], hidden: Sequence[int] = NetworkConfig.hidden,
                 activation: str = NetworkConfig.activation) -> None:
        super().__init__()
        self.n_obs = int(n_obs)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.normalizer = Normalizer(n_obs)
        self.body = mlp(n_obs, hidden, len(residual_limit), activation)
        self.register_buffer("limit", torch.as_tensor(list(residual_limit), dtype=torch.float32))

    def unit_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Return the action in [-1, 1] (before scaling by residual_limit)."""
        return torch.tanh(self.body(self.normalizer(obs)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # The final clamp only removes float rounding above the bound (tanh may round to 1 + 1 ulp).
        return torch.minimum(torch.maximum(self.unit_action(obs) * self.limit, -self.limit), self.limit)

    def zero_output_layer(self) -> None:
        with torch.no_grad():
            self.body[-1].weight.zero_()
            self.body[-1].bias.zero_()

    def describe(self) -> dict:
        return {"n_obs": self.n_obs, "hidden": list(self.hidden), "activation": self.activation,
                "residual_limit": self.limit.tolist()}

    @classmethod
    def from_description(cls, d: dict) -> "ResidualPolicyNet":
        return cls(d["n_obs"], d["residual_limit"], d["hidden"], d.get("activation", "relu"))


class ResidualEnsemble(nn.Module):
    """The mean of K :class:`ResidualPolicyNet` s trained apart (``bc.students``): obs -> residual in N m.

    Each member keeps its own normaliser; the mean of outputs within +-residual_limit is within it too.
    Averaging independently fitted students removes part of what each adds to its expert from state to
    state (docs/roughness.md). Exported as one stateless graph with the K bodies (the runtime's contract
    is unchanged).
    """

    def __init__(self, members: Sequence[ResidualPolicyNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("ResidualEnsemble: expected at least one member, found none")
        n_obs = {m.n_obs for m in members}
        limits = {tuple(m.limit.tolist()) for m in members}
        if len(n_obs) != 1 or len(limits) != 1:
            raise ValueError(f"ResidualEnsemble: expected members of one observation size and residual_limit, "
                             f"found sizes {sorted(n_obs)} and limits {sorted(limits)}")
        self.members = nn.ModuleList(members)
        self.n_obs = members[0].n_obs
        self.register_buffer("limit", members[0].limit.clone())

    @property
    def normalizer(self) -> Normalizer:
        """The first member's normaliser (its clip is every member's)."""
        return self.members[0].normalizer

    def unit_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Return the mean of the members' actions in [-1, 1]."""
        return torch.stack([m.unit_action(obs) for m in self.members]).mean(0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = torch.stack([m(obs) for m in self.members]).mean(0)
        return torch.minimum(torch.maximum(out, -self.limit), self.limit)

    def describe(self) -> dict:
        return {"ensemble": [m.describe() for m in self.members]}


def net_from_description(d: dict) -> nn.Module:
    """Build the (untrained) network a ``describe()`` wrote: one :class:`ResidualPolicyNet` or an ensemble."""
    if "ensemble" in d:
        return ResidualEnsemble([ResidualPolicyNet.from_description(m) for m in d["ensemble"]])
    return ResidualPolicyNet.from_description(d)


def save_checkpoint(path, net: nn.Module, meta: dict) -> None:
    torch.save({"net": net.describe(), "state_dict": net.state_dict(), "meta": meta}, str(path))


def load_checkpoint(path) -> tuple[nn.Module, dict]:
    """Return the checkpoint's network (a :class:`ResidualPolicyNet` or :class:`ResidualEnsemble`) and metadata."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    net = net_from_description(ckpt["net"])
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    return net, ckpt["meta"]
