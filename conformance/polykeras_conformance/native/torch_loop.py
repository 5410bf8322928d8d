"""The workload as a plain PyTorch user writes it: ``nn`` modules, ``torch.optim``,
a ``randperm`` per epoch, logits into ``F.cross_entropy`` /
``binary_cross_entropy_with_logits``. Images are stored NCHW once, as torch
users do; an LSTM without recurrent dropout is the fused ``nn.LSTM``, one with
it an ``nn.LSTMCell`` loop (no fused kernel can mask ``h`` inside the
recurrence).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polykeras_conformance import native

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softmax": lambda: nn.Softmax(-1)}


def version() -> str:
    return f"torch {torch.__version__}"


class _LSTM(nn.Module):
    """Keras's LSTM (gates i, f, c, o; last output) with its input and recurrent dropout."""

    def __init__(self, layer: native.Layer):
        super().__init__()
        units, w = layer.config["units"], layer.weights
        self.dropout, self.recurrent_dropout = layer.config["dropout"], layer.config["recurrent_dropout"]
        self.units = units
        fused = not self.recurrent_dropout
        self.rnn = nn.LSTM(layer.input_shape[-1], units, batch_first=True) if fused else \
            nn.LSTMCell(layer.input_shape[-1], units)
        suffix = "_l0" if fused else ""
        with torch.no_grad():  # torch's gate order is Keras's; one bias, so bias_hh is zero
            getattr(self.rnn, "weight_ih" + suffix).copy_(torch.from_numpy(w["kernel"].T))
            getattr(self.rnn, "weight_hh" + suffix).copy_(torch.from_numpy(w["recurrent_kernel"].T))
            getattr(self.rnn, "bias_ih" + suffix).copy_(torch.from_numpy(w["bias"]))
            getattr(self.rnn, "bias_hh" + suffix).zero_()

    def _mask(self, shape, rate, like):
        keep = 1 - rate
        return like.new_empty(shape).bernoulli_(keep) / keep

    def forward(self, x):
        if self.training and self.dropout:  # one mask per sequence, as Keras draws it
            x = x * self._mask((x.shape[0], 1, x.shape[2]), self.dropout, x)
        if isinstance(self.rnn, nn.LSTM):
            return self.rnn(x)[0][:, -1]
        h = c = x.new_zeros(x.shape[0], self.units)
        h_mask = self._mask((x.shape[0], self.units), self.recurrent_dropout, x) if self.training else None
        for t in range(x.shape[1]):
            h, c = self.rnn(x[:, t], (h if h_mask is None else h * h_mask, c))
        return h


def _module(layer: native.Layer, channels_first_shape) -> nn.Module:
    cfg, w = layer.config, layer.weights
    if layer.kind == "Dense":
        linear = nn.Linear(layer.input_shape[-1], cfg["units"], bias=cfg["use_bias"])
        kernel = w["kernel"]
        if channels_first_shape is not None:  # after an NCHW Flatten: Keras's rows are (h, w, c), torch's (c, h, w)
            h, w_, c = channels_first_shape
            kernel = kernel.reshape(h, w_, c, -1).transpose(2, 0, 1, 3).reshape(h * w_ * c, -1)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            if cfg["use_bias"]:
                linear.bias.copy_(torch.from_numpy(w["bias"]))
        return linear
    if layer.kind == "Conv2D":
        conv = nn.Conv2d(layer.input_shape[-1], cfg["filters"], tuple(cfg["kernel_size"]), tuple(cfg["strides"]),
                         padding=cfg["padding"], bias=cfg["use_bias"])
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w["kernel"].transpose(3, 2, 0, 1))))
            if cfg["use_bias"]:
                conv.bias.copy_(torch.from_numpy(w["bias"]))
        return conv
    if layer.kind == "MaxPooling2D":
        if cfg["padding"] != "valid":
            raise native.measure.Unsupported("the native torch loop covers MaxPooling2D(padding='valid') only")
        return nn.MaxPool2d(tuple(cfg["pool_size"]), tuple(cfg["strides"]))
    if layer.kind == "Dropout":
        return nn.Dropout(cfg["rate"])
    if layer.kind == "Flatten":
        return nn.Flatten()
    if layer.kind == "Embedding":
        embedding = nn.Embedding(cfg["input_dim"], cfg["output_dim"])
        with torch.no_grad():
            embedding.weight.copy_(torch.from_numpy(w["embeddings"]))
        return embedding
    return _LSTM(layer)


def build(model, loss: str) -> tuple[nn.Sequential, bool, bool]:
    """(the network, whether its output is logits, whether it takes NCHW images)."""
    layers, fused = native.chain(model, loss, "torch")
    modules, channels_first, flattened_shape = [], False, None
    for layer in layers:
        if layer.kind == "Conv2D" and not channels_first:
            if modules:
                raise native.measure.Unsupported("the native torch loop takes Conv2D layers first")
            channels_first = True
        if layer.kind == "Flatten" and channels_first:
            flattened_shape = layer.input_shape
        modules.append(_module(layer, flattened_shape if layer.kind == "Dense" else None))
        if layer.kind == "Dense":
            flattened_shape = None
        activation = layer.config.get("activation", "linear")
        if activation != "linear":
            if activation not in ACTIVATIONS:
                raise native.measure.Unsupported(f"the native torch loop has no activation {activation!r}")
            modules.append(ACTIVATIONS[activation]())
    return nn.Sequential(*modules), fused, channels_first


class Loop:
    def __init__(self, model, workload, device: str):
        self.device = torch.device(device)
        self.loss_name = workload.loss
        self.net, self.logits, self.channels_first = build(model, workload.loss)
        self.losses: list[float] = []  # the mean training loss of each epoch
        self.net.to(self.device)
        kind, cfg = native.optimizer_config(workload)
        params, lr = self.net.parameters(), cfg["learning_rate"]
        if kind == "Adam":
            self.opt = torch.optim.Adam(params, lr, betas=(cfg["beta_1"], cfg["beta_2"]), eps=cfg["epsilon"])
        elif kind == "RMSprop":
            self.opt = torch.optim.RMSprop(params, lr, alpha=cfg["rho"], eps=cfg["epsilon"],
                                           momentum=cfg["momentum"], centered=cfg["centered"])
        else:
            self.opt = torch.optim.SGD(params, lr, momentum=cfg["momentum"], nesterov=cfg["nesterov"])

    def tensors(self, x, y):
        if self.channels_first:
            x = x.transpose(0, 3, 1, 2)
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64 if x.dtype.kind == "i" else np.float32))
        y = torch.from_numpy(y.astype(np.int64 if self.loss_name.startswith("sparse") else np.float32))
        return x.to(self.device), y.to(self.device)

    def predict(self, x) -> np.ndarray:
        self.net.eval()
        with torch.no_grad():
            out = self.net(self.tensors(x, np.zeros(len(x)))[0])
        if self.logits:
            out = torch.sigmoid(out) if self.loss_name == "binary_crossentropy" else torch.softmax(out, -1)
        return out.cpu().numpy()

    def _loss_and_correct(self, out, y):
        if self.loss_name == "sparse_categorical_crossentropy":
            return F.cross_entropy(out, y), (out.argmax(1) == y).sum()
        if self.loss_name == "categorical_crossentropy":
            return F.cross_entropy(out, y), (out.argmax(1) == y.argmax(1)).sum()
        if self.loss_name == "binary_crossentropy":
            return F.binary_cross_entropy_with_logits(out, y), ((out > 0) == (y > 0.5)).sum()
        return F.mse_loss(out, y), torch.zeros((), dtype=torch.long, device=out.device)

    def fit_epochs(self, x, y, batch: int, epochs: int) -> list[float]:
        x, y = self.tensors(x, y)
        if self.loss_name == "binary_crossentropy" and y.ndim == 1:
            y = y[:, None]
        n, seconds = len(x), []
        self.net.train()
        for _ in range(epochs):
            start = time.perf_counter()
            total = torch.zeros((), device=self.device)
            correct = torch.zeros((), dtype=torch.long, device=self.device)
            perm = torch.randperm(n, device=self.device)
            for lo in range(0, n, batch):
                index = perm[lo:lo + batch]
                xb, yb = x[index], y[index]
                self.opt.zero_grad()
                out = self.net(xb)
                loss, right = self._loss_and_correct(out, yb)
                loss.backward()
                self.opt.step()
                with torch.no_grad():
                    total += loss.detach() * len(xb)
                    correct += right
            self.losses.append(float(total) / n)  # the epoch's logs: the host sync
            int(correct)
            seconds.append(time.perf_counter() - start)
        return seconds
