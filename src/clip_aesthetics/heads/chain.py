"""Layer shapes (prefix, in, out, bias) + an activation -> a chain of linear layers under the published file's own key
names, so that the file's state dict loads into it strictly (the `chain` head kind: imported published heads)."""

from __future__ import annotations

import torch
from torch import nn

from clip_aesthetics.heads.kinds import HeadKind

ACTIVATIONS = {"none": None, "relu": nn.ReLU, "gelu": nn.GELU}


class ChainHead(nn.Module):
    """Linear layers under the file's own key names (so its state dict loads strictly), applied in order."""

    def __init__(self, layers: list, activation: str = "none"):
        super().__init__()
        self.order = []
        for prefix, in_dim, out_dim, has_bias in layers:
            linear = nn.Linear(in_dim, out_dim, bias=has_bias)
            if not prefix:  # LAION's linear head: the state dict is the layer itself
                self.weight, self.bias = linear.weight, linear.bias
                self.order.append(None)
                continue
            parent = self
            *parents, leaf = prefix.split(".")
            for name in parents:
                if name not in parent._modules:
                    parent.add_module(name, nn.Module())
                parent = parent._modules[name]
            parent.add_module(leaf, linear)
            self.order.append(prefix)
        self.activation = ACTIVATIONS[activation]() if ACTIVATIONS[activation] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, prefix in enumerate(self.order):
            if prefix is None:
                x = nn.functional.linear(x, self.weight, self.bias)
            else:
                x = self.get_submodule(prefix)(x)
            if self.activation is not None and k < len(self.order) - 1:
                x = self.activation(x)
        return x


def _chain(spec) -> nn.Module:
    return ChainHead([list(layer) for layer in spec.layers], spec.activation)


CHAIN = HeadKind(_chain, "a published head, rebuilt from the layer shapes its file holds (import-head)",
                 trainable=False)
