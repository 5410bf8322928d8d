"""Merge layers in torch. The rules are the core's (:mod:`polykeras.layers.merge`);
autograd differentiates them (``torch.maximum``/``minimum`` split a tie's
gradient equally, as the reference does)."""

from __future__ import annotations

import torch

from polykeras.layers.merge import NORMALIZE_EPSILON, concat_axis, dot_axes, dot_subscripts, expanded_shapes

from .base import TorchLayer


def expanded(xs: list) -> list:
    """The inputs at one rank (:func:`~polykeras.layers.merge.expanded_shapes`)."""
    return [x.reshape(shape) for x, shape in zip(xs, expanded_shapes([tuple(x.shape) for x in xs]))]


class Merge(TorchLayer):
    multiple_inputs = True


def _folding(kind_name: str, fold):
    class Elementwise(Merge):
        kind = kind_name

        def forward(self, params, xs, ctx):
            xs = expanded(list(xs))
            out = xs[0]
            for x in xs[1:]:
                out = fold(out, x)
            return out

    Elementwise.__name__ = Elementwise.__qualname__ = kind_name
    return Elementwise


Add = _folding("Add", torch.add)
Subtract = _folding("Subtract", torch.sub)
Multiply = _folding("Multiply", torch.mul)
Maximum = _folding("Maximum", torch.maximum)
Minimum = _folding("Minimum", torch.minimum)


class Average(Merge):
    kind = "Average"

    def forward(self, params, xs, ctx):
        xs = expanded(list(xs))
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out / len(xs)


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
