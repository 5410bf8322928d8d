"""Merge layers in torch. The rules are the core's (:mod:`polykeras.layers.merge`);
autograd differentiates them (``torch.maximum``/``minimum`` split a tie's
gradient equally, as the reference does)."""

from __future__ import annotations

import torch

from polykeras.layers.merge import NORMALIZE_EPSILON, concat_axis, dot_axes, dot_subscripts, elementwise_merge

from .base import TorchLayer


class Merge(TorchLayer):
    multiple_inputs = True


class Elementwise(Merge):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: :func:`~polykeras.layers.merge.elementwise_merge`."""

    def forward(self, params, xs, ctx):
        return elementwise_merge(self.kind, list(xs), torch)


Add, Subtract, Multiply, Average, Maximum, Minimum = (type(kind, (Elementwise,), {"kind": kind}) for kind in (
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"))


class Concatenate(Merge):
    kind = "Concatenate"

    def forward(self, params, xs, ctx):
        return torch.cat(list(xs), dim=concat_axis(int(self.spec.config.get("axis", -1)), xs[0].dim()))


def _normalize(x: torch.Tensor, axis: int) -> torch.Tensor:
    inv = torch.rsqrt(torch.sum(x * x, dim=axis, keepdim=True))
    return x * torch.clamp(inv, max=1.0 / NORMALIZE_EPSILON)


class Dot(Merge):
    kind = "Dot"

    def forward(self, params, xs, ctx):
        a, b = xs
        ax, bx = dot_axes(self.spec.config["axes"], a.dim(), b.dim())
        if self.spec.config.get("normalize"):
            a, b = _normalize(a, ax), _normalize(b, bx)
        sa, sb, so = dot_subscripts(a.dim(), b.dim(), ax, bx)
        out = torch.einsum(f"{sa},{sb}->{so}", a, b)
        return out[:, None] if out.dim() == 1 else out


MERGE_LAYERS = (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot)
