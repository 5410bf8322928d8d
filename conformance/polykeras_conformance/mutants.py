"""Mutation testing of the backends: how strong is the conformance suite?

A *mutant* is one realistic porting mistake planted in a backend plugin's
source (an epsilon moved inside a square root, torch's momentum convention, a
gate order, a padding side, a clipping threshold that always fires...). Each is
data -- :class:`Mutant`: the plugin file, the exact source text to replace
(which must occur exactly ``count`` times: a list whose search text has rotted
fails loudly, see :func:`apply`), the replacement, and the level and case
groups that should catch it. The curated list is :data:`MUTANTS`.

For each mutant the runner copies the plugin package into a temporary folder,
plants the mutant in the copy (the real files are never touched), and runs the
suite's worker on that copy (put first on ``PYTHONPATH``) for the backend, in
float64 and quick mode, restricted to the mutant's case groups; then compares
with the NumPy reference's measurements, taken once per run and reused for
every mutant. Every worker of a run (reference, baselines, mutants) runs a snapshot of the core, the
suite and the plugins copied at its start, so that edits to the working tree during a run cannot mix
in. A mutant is *killed* when a check fails that passes for the
unmutated backend (the *baseline*, also run once per backend), *survived*
when none does, *timed out* when the worker hangs.

    python -m polykeras_conformance.mutants                      # the whole list
    python -m polykeras_conformance.mutants --backends torch --ids torch-adam-eps-inside-sqrt
    python -m polykeras_conformance.mutants --check              # every search text is found, nothing run

writes ``mutants.md`` and ``mutants.json`` to ``--out`` (default ``out/mutants``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: backend name -> (package name, source folder of the package in this repository)
PLUGINS = {
    "torch": ("polykeras_torch", REPO / "plugins" / "polykeras_torch"),
    "jax": ("polykeras_jax", REPO / "plugins" / "polykeras_jax"),
    "example": ("polykeras_example", REPO / "examples" / "polykeras-example-backend" / "polykeras_example"),
}

LEVEL_ORDER = ("L0", "L1", "L2")


class MutantError(Exception):
    """A mutant cannot be planted: its search text is missing (or ambiguous), or the result does not compile."""


@dataclass(frozen=True)
class Mutant:
    id: str
    backend: str  # a key of PLUGINS
    path: str  # file inside the plugin package
    search: str  # exact source text, found exactly ``count`` times
    replace: str
    level: str  # the level that should kill it (L0 layers/losses/ops, L1 optimizers, L2 training)
    groups: tuple[str, ...]  # the suite's case groups that should name it (the worker runs only these)
    description: str
    workloads: tuple[str, ...] = ()  # L2 workloads to train (level L2 mutants)
    count: int = 1
    equivalent: str = ""  # why the mutant computes the same function (excluded from the kill rate)

    def source_path(self, snapshot: Path | None = None) -> Path:
        """The mutant's file in the repository, or in ``snapshot`` (see :func:`snapshot`)."""
        package, source = PLUGINS[self.backend]
        return (source if snapshot is None else snapshot / package) / self.path


def _m(id, backend, path, search, replace, level, groups, description, **kw) -> Mutant:
    return Mutant(id, backend, path, search, replace, level, tuple(groups), description, **kw)


_ADAM = ("Adam", "AdamW")
_BN = ("BatchNormalization",)
_REC = ("Recurrent",)
_POOL = ("Pooling",)
_CONV = ("Conv2D", "Conv1D", "Pooling")

MUTANTS: list[Mutant] = [
    # ---------------------------------------------------------------- torch: optimizers
    _m("torch-adam-eps-inside-sqrt", "torch", "optimizers.py",
       "        self._into(denominator, \"sqrt\", v)\n        torch._foreach_add_(denominator, self._scalar(c[\"epsilon\"]))\n",
       "        self._into(denominator, \"add\", v, self._scalar(c[\"epsilon\"]))\n        torch._foreach_sqrt_(denominator)\n",
       "L1", _ADAM, "Adam: sqrt(v + eps) instead of Keras's sqrt(v) + eps"),
    _m("torch-adam-no-bias-correction", "torch", "optimizers.py",
       "alpha = float(dt(lr) * np.sqrt(one - b2 ** t) / (one - b1 ** t))", "alpha = float(dt(lr))",
       "L1", _ADAM, "Adam: the bias corrections forgotten in the step size"),
    _m("torch-sgd-momentum-torch-convention", "torch", "optimizers.py",
       "        torch._foreach_add_(self.slots, grads, alpha=-lr)\n"
       "        if self.config[\"nesterov\"]:\n"
       "            torch._foreach_add_(params, self.slots, alpha=momentum)\n"
       "            torch._foreach_add_(params, grads, alpha=-lr)\n"
       "        else:\n"
       "            torch._foreach_add_(params, self.slots)\n",
       "        torch._foreach_add_(self.slots, grads)\n"
       "        if self.config[\"nesterov\"]:\n"
       "            torch._foreach_add_(params, self.slots, alpha=-lr * momentum)\n"
       "            torch._foreach_add_(params, grads, alpha=-lr)\n"
       "        else:\n"
       "            torch._foreach_add_(params, self.slots, alpha=-lr)\n",
       "L1", ("SGD", "SampleWeight"),
       "SGD momentum as torch.optim keeps it (v = m*v + g; w -= lr*v) instead of Keras's v = m*v - lr*g; w += v: "
       "the same updates while the learning rate is constant, different after it changes"),
    _m("torch-sgd-nesterov-ignored", "torch", "optimizers.py",
       "        if self.config[\"nesterov\"]:\n            torch._foreach_add_(params, self.slots, alpha=momentum)",
       "        if False:\n            torch._foreach_add_(params, self.slots, alpha=momentum)",
       "L1", ("SGD",), "SGD: nesterov=True silently runs classical momentum"),
    _m("torch-rmsprop-eps-outside-sqrt", "torch", "optimizers.py",
       "        torch._foreach_add_(denominator, eps)\n        torch._foreach_sqrt_(denominator)\n",
       "        torch._foreach_sqrt_(denominator)\n        torch._foreach_add_(denominator, eps)\n",
       "L1", ("RMSprop",), "RMSprop: sqrt(a) + eps (torch.optim) instead of Keras's sqrt(a + eps)"),
    _m("torch-rmsprop-centered-sign", "torch", "optimizers.py",
       "self._into(denominator, \"addcmul\", velocity, average, average, value=-1.0)",
       "self._into(denominator, \"addcmul\", velocity, average, average, value=1.0)",
       "L1", ("RMSprop",), "centered RMSprop: a + mean(g)^2 instead of a - mean(g)^2"),
    _m("torch-adagrad-zero-initial-accumulator", "torch", "optimizers.py",
       "return {\"accumulator\": [torch.full_like(w, self.config[\"initial_accumulator_value\"]) for w in params],\n"
       "                \"scratch\"",
       "return {\"accumulator\": [torch.zeros_like(w) for w in params],\n                \"scratch\"",
       "L1", ("Adagrad",), "Adagrad: accumulator starts at 0 (torch.optim's default) instead of 0.1"),
    _m("torch-clipnorm-always-rescales", "torch", "optimizers.py",
       "scales = torch._foreach_div(torch._foreach_clamp_min(norms, clip), clip)",
       "scales = torch._foreach_div(norms, clip)",
       "L1", ("SGD",), "clipnorm rescales every gradient to the threshold, also those already below it"),
    _m("torch-global-clipnorm-always-rescales", "torch", "optimizers.py",
       "torch._foreach_mul_(grads, clip / torch.clamp_min(norm, clip))", "torch._foreach_mul_(grads, clip / norm)",
       "L1", ("Adam",), "global_clipnorm rescales to the threshold even below it"),
    _m("torch-clipvalue-one-sided", "torch", "optimizers.py",
       "            torch._foreach_clamp_min_(grads, -c[\"clipvalue\"])\n", "",
       "L1", ("RMSprop",), "clipvalue clips from above only"),
    _m("torch-adamw-decay-without-lr", "torch", "optimizers.py",
       "alpha=-self._scalar(wd * self.learning_rate)", "alpha=-self._scalar(wd)",
       "L1", ("AdamW",), "AdamW: w -= wd*w instead of Keras's w -= wd*lr*w"),
    _m("torch-nadam-momentum-schedule-shifted", "torch", "optimizers.py",
       "u_t, u_next = b1 * (one - half * decay ** dt(t)),", "u_t, u_next = b1 * (one - half * decay ** dt(t + 1)),",
       "L1", ("Nadam",), "Nadam: u_t taken one step ahead"),
    _m("torch-lion-momentum-updated-first", "torch", "optimizers.py",
       "        self._into(direction, \"mul\", m, float(b1))\n",
       "        torch._foreach_mul_(m, float(b2))\n        torch._foreach_add_(m, grads, alpha=float(one - b2))\n"
       "        self._into(direction, \"mul\", m, float(b1))\n",
       "L1", ("Lion",), "Lion: the momentum is updated before the sign step (the paper's order is the other)"),
    # ---------------------------------------------------------------- torch: losses
    _m("torch-cce-no-renormalisation", "torch", "losses.py",
       "return (p / p.sum(dim=-1, keepdim=True)).clamp(eps, 1.0 - eps)", "return p.clamp(eps, 1.0 - eps)",
       "L0", ("Loss",), "categorical crossentropy on probabilities not renormalised to sum to one (Keras renormalises)"),
    _m("torch-bce-no-clip", "torch", "losses.py",
       "    pc = p.clamp(eps, 1.0 - eps)\n    return _reduce((-(y * torch.log(pc)",
       "    pc = p\n    return _reduce((-(y * torch.log(pc)",
       "L0", ("Loss",), "binary crossentropy without Keras's clip of p to [eps, 1 - eps]"),
    _m("torch-huber-strict-threshold", "torch", "losses.py",
       "torch.where(abs_err <= delta,", "torch.where(abs_err < delta,",
       "L0", ("Loss",), "Huber: |e| < delta instead of <= delta",
       equivalent="at |e| = delta both branches are delta^2/2 with derivative delta*sign(e): the same function"),
    _m("torch-huber-linear-offset", "torch", "losses.py",
       "delta * abs_err - 0.5 * delta ** 2", "delta * abs_err - 0.5 * delta",
       "L0", ("Loss",), "Huber: the linear branch's offset 0.5*delta instead of 0.5*delta^2"),
    _m("torch-hinge-labels-not-converted", "torch", "losses.py",
       "    return torch.where(((y == 0) | (y == 1)).all(), 2.0 * y - 1.0, y)\n", "    return y\n",
       "L0", ("Loss",), "hinge: 0/1 labels not converted to -1/1"),
    _m("torch-poisson-no-epsilon", "torch", "losses.py",
       "torch.log(p + epsilon())", "torch.log(p)",
       "L0", ("Loss",), "Poisson: log(p) instead of Keras's log(p + eps)"),
    # ---------------------------------------------------------------- torch: layers
    _m("torch-bn-unbiased-variance", "torch", "layers/core.py",
       "var, mean = torch.var_mean(x, dim=tuple(range(x.dim() - 1)), correction=0)",
       "var, mean = torch.var_mean(x, dim=tuple(range(x.dim() - 1)))",
       "L0", _BN, "BatchNormalization normalises with torch's default unbiased variance"),
    _m("torch-bn-momentum-torch-convention", "torch", "layers/core.py",
       "                m = rules.momentum\n", "                m = 1.0 - rules.momentum\n",
       "L0", _BN, "BatchNormalization's moving statistics with torch's momentum (1 - Keras's)"),
    _m("torch-bn-eps-outside-sqrt", "torch", "layers/core.py",
       "y = (x - mean) * torch.rsqrt(var + rules.epsilon)", "y = (x - mean) / (torch.sqrt(var) + rules.epsilon)",
       "L0", _BN, "BatchNormalization: (x - mean) / (sqrt(var) + eps)"),
    _m("torch-frozen-bn-trains", "torch", "program.py", "spec.node_training(ctx.training)", "ctx.training",
       "L0", _BN, "a frozen BatchNormalization (trainable=False) in training mode: batch statistics, moving "
       "statistics updated (Keras 3 runs it in inference mode)"),
    _m("torch-layernorm-unbiased-variance", "torch", "layers/normalization.py",
       "var, mean = torch.var_mean(x, dim=rules.axes, keepdim=True, correction=0)",
       "var, mean = torch.var_mean(x, dim=rules.axes, keepdim=True)",
       "L0", ("LayerNormalization",), "LayerNormalization (non-trailing axes, rms_scaling) with the unbiased variance"),
    _m("torch-groupnorm-no-epsilon", "torch", "layers/normalization.py",
       "        var, mean = torch.var_mean(xg, dim=axes, keepdim=True, correction=0)\n"
       "        inv = torch.rsqrt(var + rules.epsilon)\n",
       "        var, mean = torch.var_mean(xg, dim=axes, keepdim=True, correction=0)\n"
       "        inv = torch.rsqrt(var)\n",
       "L0", ("Group/UnitNormalization",), "GroupNormalization forgets epsilon"),
    _m("torch-unitnorm-no-clamp", "torch", "layers/normalization.py",
       "torch.rsqrt((x * x).sum(dim=rules.axes, keepdim=True)).clamp(max=1.0 / rules.epsilon)",
       "torch.rsqrt((x * x).sum(dim=rules.axes, keepdim=True))",
       "L0", ("Group/UnitNormalization",), "UnitNormalization without Keras's min(rsqrt(sum x^2), 1/eps)"),
    _m("torch-lstm-loop-gate-order", "torch", "layers/recurrent.py",
       "i, f, g, o = torch.addmm(xw_t, h_in, params[1].t()).chunk(4, dim=1)",
       "i, f, o, g = torch.addmm(xw_t, h_in, params[1].t()).chunk(4, dim=1)",
       "L0", _REC, "LSTM loop path (recurrent dropout, other activations): gates read as i, f, o, g"),
    _m("torch-gru-loop-update-convention", "torch", "layers/recurrent.py",
       "return (z * h_prev + (1.0 - z) * n,)", "return ((1.0 - z) * h_prev + z * n,)",
       "L0", _REC, "GRU loop path: h = (1 - z) h_prev + z n (the paper's) instead of Keras's/torch's z h_prev + (1 - z) n"),
    _m("torch-gru-gate-order-unpermuted", "torch", "layers/recurrent.py",
       "return np.concatenate([np.arange(u, 2 * u), np.arange(u), np.arange(2 * u, 3 * u)])",
       "return np.arange(3 * u)",
       "L0", _REC, "GRU: Keras's z, r, h gate blocks handed to torch (r, z, n) unpermuted"),
    _m("torch-rnn-backwards-outputs-flipped-back", "torch", "layers/recurrent.py",
       "                output = sequence if rules.return_sequences else sequence[:, -1]\n",
       "                if rules.go_backwards and rules.return_sequences:\n                    sequence = sequence.flip(1)\n"
       "                output = sequence if rules.return_sequences else sequence[:, -1]\n",
       "L0", _REC, "fused recurrent path with go_backwards: the output sequence flipped back to input order "
                  "(Keras keeps processing order)"),
    _m("torch-conv-same-padding-symmetric", "torch", "layers/conv.py",
       "if all(b == a and b <= k // 2 for (b, a), k in zip(pads, kernel)):",
       "if all(b <= k // 2 for (b, a), k in zip(pads, kernel)):",
       "L0", _CONV, "'same' padding with an odd total: torch's symmetric padding= used, the extra row/column lost"),
    _m("torch-avgpool-count-include-pad", "torch", "layers/conv.py",
       "self.padding, count_include_pad=False)", "self.padding, count_include_pad=True)",
       "L0", _POOL, "average pooling divides by the whole window, padding included (torch's default)"),
    _m("torch-maxpool-zero-padding", "torch", "layers/conv.py",
       "xn = F.pad(xn, self.explicit_pad, value=float(\"-inf\"))", "xn = F.pad(xn, self.explicit_pad)",
       "L0", _POOL, "max pooling pads with zeros instead of -inf (asymmetric 'same' padding)"),
    # ---------------------------------------------------------------- torch: activations, metrics
    _m("torch-gelu-tanh-approximation", "torch", "activations.py",
       "    \"gelu\": F.gelu,\n", "    \"gelu\": lambda x: F.gelu(x, approximate=\"tanh\"),\n",
       "L0", ("Activation", "Dense"), "gelu: the tanh approximation instead of Keras's exact erf form"),
    _m("torch-hard-sigmoid-fused", "torch", "activations.py",
       "return F.relu6(x + 3.0) / 6.0", "return F.hardsigmoid(x)",
       "L0", ("Activation", "Dense"), "hard_sigmoid: torch's fused F.hardsigmoid (float32 1/6 in its derivative)"),
    _m("torch-softplus-default-threshold", "torch", "activations.py",
       "threshold=40.0 if x.dtype == torch.float64 else 20.0", "threshold=20.0",
       "L0", ("Activation", "Dense"), "softplus: F.softplus's default threshold 20 in float64 too (identity above 20)"),
    _m("torch-binary-accuracy-logit-threshold", "torch", "metrics.py",
       "threshold = config.get(\"threshold\", 0.5)", "threshold = config.get(\"threshold\", 0.0)",
       "L0", ("Metric",), "binary accuracy thresholds probabilities at 0 (the logits' threshold) instead of 0.5"),
    _m("torch-sparse-accuracy-broadcast", "torch", "metrics.py",
       "return lambda y, p: _sparse(y, p) == p.argmax(dim=-1)",
       "return lambda y, p: _sparse(y, p) == p.argmax(dim=-1, keepdim=True)",
       "L0", ("Metric",), "sparse categorical accuracy compares (batch,) labels with (batch, 1) predictions: "
                          "broadcast to a (batch, batch) table, a wrong value without an error"),
    # ---------------------------------------------------------------- jax
    _m("jax-frozen-bn-trains", "jax", "model.py", "LayerContext(spec.node_training(training),",
       "LayerContext(training,", "L0", _BN, "a frozen BatchNormalization (trainable=False) in training mode "
       "(Keras 3 runs it in inference mode)"),
    _m("jax-adam-eps-inside-sqrt", "jax", "optimizers.py",
       "params = [w - alpha * m / (jnp.sqrt(v) + eps) for w, m, v in zip(params, ms, denominators)]",
       "params = [w - alpha * m / jnp.sqrt(v + eps) for w, m, v in zip(params, ms, denominators)]",
       "L1", _ADAM, "Adam: sqrt(v + eps) instead of sqrt(v) + eps"),
    _m("jax-amsgrad-ignored", "jax", "optimizers.py",
       "denominators = [jnp.maximum(vh, v) for vh, v in zip(slots[2], vs)]", "denominators = list(vs)",
       "L1", ("Adam",), "amsgrad=True runs plain Adam (the running maximum of v is not used)"),
    _m("jax-nesterov-old-velocity", "jax", "optimizers.py",
       "params = [w + momentum * v - lr * g for w, v, g in zip(params, velocities, grads)]",
       "params = [w + momentum * v - lr * g for w, v, g in zip(params, slots, grads)]",
       "L1", ("SGD",), "nesterov SGD looks ahead with the previous velocity"),
    _m("jax-clipnorm-always-rescales", "jax", "optimizers.py",
       "g * (clip / jnp.maximum(jnp.sqrt(jnp.sum(g * g)), clip))", "g * (clip / jnp.sqrt(jnp.sum(g * g)))",
       "L1", ("SGD",), "clipnorm rescales every gradient to the threshold, also those below it"),
    _m("jax-rmsprop-eps-outside-sqrt", "jax", "optimizers.py",
       "scale = optax.scale_by_rms(decay=rho, eps=eps, eps_in_sqrt=True)",
       "scale = optax.scale_by_rms(decay=rho, eps=eps, eps_in_sqrt=False)",
       "L1", ("RMSprop",), "RMSprop through optax's default sqrt(a) + eps"),
    _m("jax-adagrad-zero-initial-accumulator", "jax", "optimizers.py",
       "optax.scale_by_rss(self.config[\"initial_accumulator_value\"],", "optax.scale_by_rss(0.0,",
       "L1", ("Adagrad",), "Adagrad: accumulator starts at 0"),
    _m("jax-adamax-eps-placement", "jax", "optimizers.py",
       "lr * m / ((one - b1 ** t) * (u + eps))", "lr * m / ((one - b1 ** t) * u + eps)",
       "L1", ("Adamax",), "Adamax: epsilon added after the bias correction"),
    _m("jax-adadelta-eps-outside-sqrt", "jax", "optimizers.py",
       "/ jnp.sqrt(a + eps) for s, a, g", "/ (jnp.sqrt(a) + eps) for s, a, g",
       "L1", ("Adadelta",), "Adadelta: sqrt(a) + eps in the denominator"),
    _m("jax-weight-decay-without-lr", "jax", "optimizers.py",
       "params = [w - w * (wd * lr) for w in params]", "params = [w - w * wd for w in params]",
       "L1", ("AdamW",), "AdamW: decay not scaled by the learning rate"),
    _m("jax-cce-label-smoothing-k-minus-1", "jax", "losses.py",
       "        y = y * (1.0 - label_smoothing) + label_smoothing / p.shape[-1]\n    log_probs",
       "        y = y * (1.0 - label_smoothing) + label_smoothing / (p.shape[-1] - 1)\n    log_probs",
       "L0", ("Loss",), "label smoothing spread over K - 1 classes instead of K"),
    _m("jax-log-softmax-no-max-shift", "jax", "losses.py",
       "    shifted = z - jnp.max(z, axis=-1, keepdims=True)\n", "    shifted = z\n",
       "L0", ("Loss",), "crossentropy from logits: log-softmax without subtracting the max (overflows for large logits)"),
    _m("jax-bce-no-clip", "jax", "losses.py",
       "        pc = _clip(p)\n", "        pc = p\n",
       "L0", ("Loss",), "binary crossentropy without the clip of p to [eps, 1 - eps]"),
    _m("jax-bn-momentum-swapped", "jax", "layers/normalization.py",
       "            m = rules.momentum\n", "            m = 1.0 - rules.momentum\n",
       "L0", _BN, "BatchNormalization's moving statistics with torch's momentum convention"),
    _m("jax-bn-unbiased-variance", "jax", "layers/normalization.py",
       "var = jnp.mean(jnp.square(x - mean), axis=axes)", "var = jnp.var(x, axis=axes, ddof=1)",
       "L0", _BN, "BatchNormalization normalises with the unbiased batch variance"),
    _m("jax-layernorm-eps-outside-sqrt", "jax", "layers/normalization.py",
       "inv = lax.rsqrt(var + jnp.asarray(rules.epsilon, x.dtype))", "inv = 1.0 / (jnp.sqrt(var) + rules.epsilon)",
       "L0", ("LayerNormalization",), "LayerNormalization: 1 / (sqrt(var) + eps)"),
    _m("jax-lstm-gate-order", "jax", "layers/recurrent.py",
       "z_i, z_f, z_c, z_o = jnp.split(xw_t + h_in @ U, 4, axis=-1)",
       "z_i, z_f, z_o, z_c = jnp.split(xw_t + h_in @ U, 4, axis=-1)",
       "L0", _REC, "LSTM gates read as i, f, o, c"),
    _m("jax-gru-reset-before-as-after", "jax", "layers/recurrent.py",
       "hh = self.activation(x_h + (r * h_in) @ U[:, 2 * u:])", "hh = self.activation(x_h + r * (h_in @ U[:, 2 * u:]))",
       "L0", _REC, "GRU reset_after=False computed as reset-after (r applied after the matmul)"),
    _m("jax-rnn-backwards-outputs-flipped-back", "jax", "layers/recurrent.py",
       "output = jnp.swapaxes(outputs, 0, 1) if rules.return_sequences else outputs[-1]",
       "output = (jnp.swapaxes(outputs, 0, 1)[:, ::-1] if rules.go_backwards else jnp.swapaxes(outputs, 0, 1)) "
       "if rules.return_sequences else outputs[-1]",
       "L0", _REC, "go_backwards with return_sequences: outputs flipped back to input order"),
    _m("jax-recurrent-dropout-ignored", "jax", "layers/recurrent.py",
       "h_in = state[0] if rec_mask is None else state[0] * rec_mask", "h_in = state[0]",
       "L0", _REC, "recurrent_dropout's mask on h_{t-1} not applied"),
    _m("jax-avgpool-count-include-pad", "jax", "layers/conv.py",
       "        return sums / counts\n", "        return sums / float(np.prod(self.rules.pool_size))\n",
       "L0", _POOL, "average pooling divides by the whole window, padding included"),
    _m("jax-same-padding-extra-before", "jax", "layers/conv.py",
       "return [(before, after) for before, after, _ in rules.padding_amounts(shape[1:-1])]",
       "return [(after, before) for before, after, _ in rules.padding_amounts(shape[1:-1])]",
       "L0", _CONV, "'same' padding's odd extra row/column put before (as some frameworks do) instead of after"),
    _m("jax-hard-sigmoid-keras2", "jax", "activations.py",
       "return jnp.clip(x / 6.0 + 0.5, 0.0, 1.0)", "return jnp.clip(0.2 * x + 0.5, 0.0, 1.0)",
       "L0", ("Activation", "Dense"), "hard_sigmoid: Keras 2's 0.2*x + 0.5 instead of Keras 3's x/6 + 0.5"),
    _m("jax-softmax-no-max-shift", "jax", "activations.py",
       "    shifted = x - jnp.max(x, axis=-1, keepdims=True)\n", "    shifted = x\n",
       "L0", ("Activation", "Dense"), "softmax without subtracting the max"),
    _m("jax-binary-accuracy-logit-threshold", "jax", "metrics.py",
       "threshold = config.get(\"threshold\", 0.5)", "threshold = config.get(\"threshold\", 0.0)",
       "L0", ("Metric",), "binary accuracy thresholds at 0 instead of 0.5"),
    _m("jax-top-k-ties-excluded", "jax", "metrics.py",
       "return jnp.sum(p > at_target, axis=-1) < k", "return jnp.sum(p >= at_target, axis=-1) <= k",
       "L0", ("Metric",), "in_top_k counts the outputs tied with the target's against it (as a top_k-by-index does)"),
    # ---------------------------------------------------------------- the example plugin
    _m("example-adam-no-bias-correction", "example", "optimizers.py",
       "alpha = lr * math.sqrt(1 - c[\"beta_2\"] ** t) / (1 - c[\"beta_1\"] ** t)", "alpha = lr",
       "L1", _ADAM, "Adam: no bias correction"),
    _m("example-nesterov-ignored", "example", "optimizers.py",
       "w += momentum * v - lr * g if self.config[\"nesterov\"] else v", "w += v",
       "L1", ("SGD",), "nesterov=True runs classical momentum"),
    _m("example-clipnorm-always-rescales", "example", "optimizers.py",
       "g * (c[\"clipnorm\"] / max(float(np.linalg.norm(g)), c[\"clipnorm\"]))",
       "g * (c[\"clipnorm\"] / float(np.linalg.norm(g)))",
       "L1", ("SGD",), "clipnorm rescales every gradient to the threshold"),
    _m("example-bce-clip-gradient-not-zeroed", "example", "losses.py",
       "np.where((p >= eps) & (p <= 1 - eps), (pc - y) / (pc * (1 - pc)), 0) / p.size",
       "(pc - y) / (pc * (1 - pc)) / p.size",
       "L0", ("Loss",), "binary crossentropy: the gradient where p was clipped is not zeroed"),
    _m("example-mae-gradient-sign", "example", "losses.py",
       "return np.abs(p - y).mean(), np.sign(p - y) / p.size", "return np.abs(p - y).mean(), np.sign(y - p) / p.size",
       "L0", ("Loss",), "mean absolute error: gradient of the wrong sign"),
    _m("example-gelu-derivative", "example", "layers.py",
       "x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)", "np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)",
       "L0", ("Activation", "Dense"), "gelu's derivative loses the factor x of its second term"),
    _m("example-dropout-backward-unmasked", "example", "layers.py",
       "return (dy if mask is None else dy * mask), []", "return dy, []",
       "L0", ("Dropout",), "dropout's backward ignores the mask"),
    _m("example-binary-accuracy-logit-threshold", "example", "losses.py",
       "\"binary_accuracy\": lambda y, p: np.mean(y == (p > 0.5)),",
       "\"binary_accuracy\": lambda y, p: np.mean(y == (p > 0.0)),",
       "L0", ("Metric",), "binary accuracy thresholds at 0 instead of 0.5"),
]


# ---------------------------------------------------------------------------- planting


def mutated_source(mutant: Mutant, snapshot: Path | None = None) -> str:
    """The mutated text of the mutant's file; :class:`MutantError` when the search text is not found
    exactly ``count`` times or the result does not compile."""
    path = mutant.source_path(snapshot)
    if not path.is_file():
        raise MutantError(f"{mutant.id}: {path} does not exist")
    text = path.read_text()
    found = text.count(mutant.search)
    if found != mutant.count:
        raise MutantError(f"{mutant.id}: the search text occurs {found} times in {path} (expected {mutant.count}):\n"
                          f"{mutant.search}")
    out = text.replace(mutant.search, mutant.replace)
    try:
        compile(out, str(path), "exec")
    except SyntaxError as exc:
        raise MutantError(f"{mutant.id}: the mutated {path} does not compile: {exc}") from None
    return out


def apply(mutant: Mutant, dest: Path, snapshot: Path | None = None) -> Path:
    """Copy the mutant's plugin package (from the repository, or from ``snapshot``) into ``dest`` and
    plant the mutant in the copy; return the folder to put first on ``PYTHONPATH``."""
    package, source = PLUGINS[mutant.backend]
    text = mutated_source(mutant, snapshot)
    source = source if snapshot is None else snapshot / package
    shutil.copytree(source, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / package / mutant.path).write_text(text)
    return dest


def snapshot(dest: Path) -> Path:
    """Copy the core, the suite and every plugin package into ``dest``, to put first on ``PYTHONPATH``:
    the reference, the baselines and the mutants of one run then all run the same code, even while
    someone edits the working tree during the run."""
    import importlib.util

    packages = {name: Path(importlib.util.find_spec(name).submodule_search_locations[0])
                for name in ("polykeras", "polykeras_conformance", "polykeras_numpy", "polykeras_keras")}
    packages.update({package: source for package, source in PLUGINS.values()})
    for name, source in packages.items():
        shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def check_all(mutants: list[Mutant] | None = None, snapshot: Path | None = None) -> list[str]:
    """Every problem with the list (missing search texts, duplicate ids, unknown levels): empty when sound."""
    problems, seen = [], set()
    for mutant in MUTANTS if mutants is None else mutants:
        if mutant.id in seen:
            problems.append(f"{mutant.id}: duplicate id")
        seen.add(mutant.id)
        if mutant.level not in LEVEL_ORDER:
            problems.append(f"{mutant.id}: unknown level {mutant.level}")
        if mutant.search == mutant.replace:
            problems.append(f"{mutant.id}: the replacement is the search text")
        try:
            mutated_source(mutant, snapshot)
        except MutantError as exc:
            problems.append(str(exc))
    return problems


# ---------------------------------------------------------------------------- the worker side


def _worker_main(job_path: str) -> None:
    """Run the suite's worker on a job restricted to ``job["groups"]`` (L0/L1 case groups)."""
    from polykeras_conformance import worker

    job = json.loads(Path(job_path).read_text())
    groups = set(job.pop("groups", None) or ())
    if groups:
        every = worker.jobs

        def jobs(levels, quick, workloads):
            for item in every(levels, quick, workloads):
                if item[0] in ("L2", "L3") or item[1] in groups:
                    yield item

        worker.jobs = jobs
    worker.run(job)


def _run_worker(job: dict, out: Path, timeout: float, pythonpath: str | None = None):
    """``((arrays, meta), error, timed_out, seconds)`` of one worker run."""
    import numpy as np

    job = {**job, "out": str(out)}
    out.with_suffix(".job.json").write_text(json.dumps(job))
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "polykeras_conformance.mutants", "--worker",
                               str(out.with_suffix(".job.json"))], capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired:
        return None, f"did not finish within {timeout:.0f} s", True, time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, f"the worker crashed (exit {proc.returncode}): {tail}", False, seconds
    with np.load(out.with_suffix(".npz")) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return (arrays, json.loads(out.with_suffix(".json").read_text())), "", False, seconds


# ---------------------------------------------------------------------------- judging


@dataclass
class Result:
    id: str
    backend: str
    expected_level: str
    status: str  # killed, survived, timed out, error
    killed_at: str = ""  # the lowest level with a new failing check ("crash" for a crashed worker)
    killed_by: str = ""  # the worst new failing check of that level
    groups: list[str] = field(default_factory=list)  # groups with new failures
    other_groups: list[str] = field(default_factory=list)  # ... outside the mutant's own (with --scope all)
    at_expected_level: bool = False
    seconds: float = 0.0
    description: str = ""
    equivalent: str = ""


def _restrict(reference: tuple[dict, dict], status: dict) -> tuple[dict, dict]:
    """The reference's arrays and status for the cases ``status`` (a candidate's) measured."""
    arrays, ref_status = reference
    keys = {k for k in ref_status if k in status}
    return ({k: v for k, v in arrays.items() if k.rsplit("|", 1)[0] + "|" in keys},
            {k: v for k, v in ref_status.items() if k in keys})


def _failing(reference, candidate) -> dict[str, object]:
    """``level|group|case|quantity`` -> Check, for every failing check of ``candidate``."""
    from polykeras_conformance import compare

    arrays, meta = candidate
    checks = compare.compare(_restrict(reference, meta["status"]), (arrays, meta["status"]), "float64", quick=True)
    return {f"{c.level}|{c.group}|{c.case}|{c.quantity}": c for c in checks if not c.passed}


def judge(mutant: Mutant, measured, error: str, timed_out: bool, reference, baseline_failures: set,
          seconds: float) -> Result:
    result = Result(mutant.id, mutant.backend, mutant.level, "survived", seconds=round(seconds, 1),
                    description=mutant.description, equivalent=mutant.equivalent)
    if timed_out:
        result.status = "timed out"
        result.killed_by = error
        return result
    if measured is None:  # a crash of the mutated backend is the suite's verdict too: that backend fails
        result.status, result.killed_at, result.killed_by = "killed", "crash", error
        return result
    new = {k: c for k, c in _failing(reference, measured).items() if k not in baseline_failures}
    if not new:
        return result
    levels = sorted({c.level for c in new.values()}, key=LEVEL_ORDER.index)
    level = levels[0]
    bad = [c for c in new.values() if c.level == level]
    errors = [c for c in bad if c.status == "error"]
    worst = errors[0] if errors else max(bad, key=lambda c: (c.value or 0) / (c.limit or 1))
    result.status, result.killed_at, result.killed_by = "killed", level, f"{worst.group}: {worst.describe()}"
    result.groups = sorted({c.group for c in new.values()})
    result.other_groups = [g for g in result.groups if g not in mutant.groups]
    result.at_expected_level = mutant.level in levels
    return result


# ---------------------------------------------------------------------------- the run


def _job(backend: str, mutants: list[Mutant], scope: str) -> dict:
    levels = sorted({"L0", "L1"} | {m.level for m in mutants}, key=LEVEL_ORDER.index)
    workloads = sorted({w for m in mutants for w in m.workloads})
    groups = None if scope == "all" else sorted({g for m in mutants for g in m.groups})
    return {"backend": backend, "device": "cpu", "dtype": "float64", "levels": levels, "quick": True,
            "workloads": workloads, "groups": groups}


def run(mutants: list[Mutant], out: Path, timeout: float = 600, scope: str = "relevant", progress=print) -> list[Result]:
    """Run every mutant (grouped by backend); write ``mutants.md`` and ``mutants.json`` to ``out``.
    Every worker runs a snapshot of the code taken at the start (:func:`snapshot`)."""
    out.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    started = time.perf_counter()
    by_backend: dict[str, list[Mutant]] = {}
    for mutant in mutants:
        by_backend.setdefault(mutant.backend, []).append(mutant)
    with tempfile.TemporaryDirectory(prefix="polykeras-mutants-") as tmp:
        tmp = Path(tmp)
        code = snapshot(tmp / "snapshot")
        problems = check_all(mutants, code)
        if problems:
            raise MutantError("\n".join(problems))
        # the reference, once: every case any mutant of the run needs
        ref_job = _job("numpy", mutants, scope)
        progress(f"mutants: the reference (numpy, {', '.join(ref_job['levels'])}) ...")
        reference, error, _, seconds = _run_worker(ref_job, tmp / "reference", timeout, pythonpath=str(code))
        if reference is None:
            raise RuntimeError(f"the reference failed: {error}")
        reference = (reference[0], reference[1]["status"])
        progress(f"  {len(reference[1])} cases ({seconds:.1f} s)")
        baselines = {}
        for backend, group in by_backend.items():
            job = _job(backend, group, scope)
            progress(f"mutants: {backend} unmutated (the baseline) ...")
            measured, error, _, seconds = _run_worker(job, tmp / f"baseline-{backend}", timeout, pythonpath=str(code))
            if measured is None:
                raise RuntimeError(f"the unmutated {backend} backend failed: {error}")
            baselines[backend] = set(_failing(reference, measured))
            progress(f"  {len(measured[1]['status'])} cases, {len(baselines[backend])} failing already "
                     f"({seconds:.1f} s)")
            for mutant in group:
                job = _job(backend, [mutant], scope)
                folder = tmp / mutant.id
                folder.mkdir()
                apply(mutant, folder / "src", code)
                measured, error, timed_out, seconds = _run_worker(
                    job, folder / "run", timeout, pythonpath=os.pathsep.join([str(folder / "src"), str(code)]))
                result = judge(mutant, measured, error, timed_out, reference, baselines[backend], seconds)
                results.append(result)
                where = f" at {result.killed_at}: {result.killed_by}" if result.status == "killed" else ""
                progress(f"  {mutant.id}: {result.status}{where} ({seconds:.1f} s)")
                shutil.rmtree(folder, ignore_errors=True)
    total = time.perf_counter() - started
    write_report(results, out, total, scope)
    return results


# ---------------------------------------------------------------------------- the report


def summary(results: list[Result]) -> dict:
    """Kill rates by backend and by expected level, over the non-equivalent mutants."""
    def rate(rows):
        judged = [r for r in rows if not r.equivalent]
        killed = [r for r in judged if r.status == "killed"]
        return {"mutants": len(rows), "equivalent": len(rows) - len(judged), "killed": len(killed),
                "killed at the expected level": sum(r.at_expected_level for r in killed),
                "survived": sum(r.status == "survived" for r in judged),
                "timed out": sum(r.status == "timed out" for r in judged),
                "kill rate": round(len(killed) / len(judged), 3) if judged else None}

    backends = sorted({r.backend for r in results})
    return {"all": rate(results),
            "by backend": {b: rate([r for r in results if r.backend == b]) for b in backends},
            "by level": {lv: rate([r for r in results if r.expected_level == lv]) for lv in LEVEL_ORDER
                         if any(r.expected_level == lv for r in results)}}


def write_report(results: list[Result], out: Path, seconds: float, scope: str) -> Path:
    stats = summary(results)
    (out / "mutants.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "seconds": round(seconds, 1),
                                                  "scope": scope, "summary": stats,
                                                  "results": [asdict(r) for r in results]}, indent=1))
    columns = ["mutants", "equivalent", "killed", "killed at the expected level", "survived", "timed out", "kill rate"]

    def table(rows: dict) -> list[str]:
        lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for name, row in rows.items():
            rate = "-" if row["kill rate"] is None else f"{100 * row['kill rate']:.0f}%"
            lines.append(f"| {name} | " + " | ".join(str(row[c]) for c in columns[:-1]) + f" | {rate} |")
        return lines

    lines = [f"# Mutation testing: {len(results)} mutants, {seconds / 60:.1f} min (scope: {scope})", "",
             "Kill rate over the non-equivalent mutants (quick mode, float64).", "", "## By backend", "",
             *table({**stats["by backend"], "**all**": stats["all"]}), "", "## By the level that should kill them", "",
             *table(stats["by level"]), "", "## Mutants", "",
             "| mutant | expected | status | killed at | by | also failing | s |", "|---|---|---|---|---|---|---|"]
    for r in results:
        status = f"equivalent ({r.status})" if r.equivalent else r.status
        by = r.killed_by.replace("|", "/")
        also = ", ".join(r.other_groups)
        lines.append(f"| `{r.id}` | {r.expected_level} | {status} | {r.killed_at} | {by} | {also} | {r.seconds} |")
    survivors = [r for r in results if r.status != "killed"]
    if survivors:
        lines += ["", "## Not killed", ""]
        lines += [f"- `{r.id}` ({r.status}): {r.description}" + (f" -- equivalent: {r.equivalent}" if r.equivalent
                                                                   else "") for r in survivors]
    path = out / "mutants.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polykeras_conformance.mutants", description=__doc__.split("\n")[0])
    parser.add_argument("--backends", help=f"comma-separated, among {', '.join(PLUGINS)} (default: all)")
    parser.add_argument("--ids", help="comma-separated mutant ids (default: every mutant of the backends)")
    parser.add_argument("--scope", choices=("relevant", "all"), default="relevant",
                        help="run each mutant on its own case groups (default) or on every L0/L1 case")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a worker counts as hung")
    parser.add_argument("--out", default="out/mutants", help="folder for mutants.md and mutants.json")
    parser.add_argument("--check", action="store_true", help="only check that every mutant can be planted")
    parser.add_argument("--list", action="store_true", help="list the mutants")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker_main(args.worker)
        return 0
    chosen = MUTANTS
    if args.backends:
        unknown = set(args.backends.split(",")) - set(PLUGINS)
        if unknown:
            parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
        chosen = [m for m in chosen if m.backend in args.backends.split(",")]
    if args.ids:
        ids = args.ids.split(",")
        unknown = set(ids) - {m.id for m in MUTANTS}
        if unknown:
            parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")
        chosen = [m for m in chosen if m.id in ids]
    if args.list:
        for m in chosen:
            print(f"{m.id:45s} {m.level}  {m.description}")
        return 0
    if args.check:
        problems = check_all(chosen)
        print("\n".join(problems) or f"all {len(chosen)} mutants can be planted")
        return 1 if problems else 0
    results = run(chosen, Path(args.out), args.timeout, args.scope)
    stats = summary(results)["all"]
    print(f"\nkilled {stats['killed']} of {stats['mutants'] - stats['equivalent']} non-equivalent mutants; "
          f"report: {Path(args.out) / 'mutants.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
