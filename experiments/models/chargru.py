"""CharGRU: a character-level GRU language model whose candidate nonlinearity is swappable.

torch.nn.GRU hard-codes tanh, and a plain Python loop over time steps under autograd trains at
0.5-0.9x its speed (docs/papers.md §9). So each layer's recurrence is one
``torch.autograd.Function`` with a hand-written backward through time: per step it does only the
recurrent matmul and a few elementwise ops, and the weight gradients of all steps come from one
large matmul after the loop, which is what lets it keep up with nn.GRU. One implementation serves
every activation, tanh included, so timings compare like with like.

Two cell variants (gates are always sigmoid; ``act`` is the registered candidate unit):

- ``pytorch``: n = act(W_in x + b_in + r * (W_hn h + b_hn)), h' = n + z * (h - n). This is
  torch.nn.GRU's cell, written in its operation order so that with tanh it matches nn.GRU.
- ``charrnn``: n = act(W_n x + b_n + U_n (r * h) + b'_n), h' = h + z * (n - h), i.e.
  z * n + (1 - z) * h: Torch7 char-rnn's model/GRU.lua (reset before the recurrent matmul,
  update gate weighting the candidate). See docs/papers.md §6.

Both keep nn.GRU's parameter layout: per layer an input projection Linear(in, 3H) and a
recurrent projection Linear(H, 3H), rows ordered [reset, update, candidate], so the parameter
count equals char-rnn's (200,292 for 128 x 2 layers and 100 symbols).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from activations import Activation
from experiments.models import ActivationFactory, register_model
from experiments.models.common import Dropout

VARIANTS = ("pytorch", "charrnn")
EMBEDDINGS = ("onehot", "embed")


def _generators(act: Activation, device: torch.device) -> list[torch.Generator]:
    """The generators ``act`` may draw from on ``device``: the device's default one and the
    unit's own (``Activation.generator``), when set."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        default = torch.cuda.default_generators[index]
    else:
        default = torch.default_generator
    return [default] + ([act.generator] if act.generator is not None else [])


@contextlib.contextmanager
def _replayed_rng(saved: list[tuple[torch.Generator, torch.Tensor]]) -> Iterator[None]:
    """Run a block with each generator set to its saved state, restoring them afterwards.

    The backward pass re-runs the activation; a stochastic unit (RReLU's random slopes) must
    draw the same numbers as in the forward pass, as torch.utils.checkpoint does.
    """
    now = [(g, g.get_state()) for g, _ in saved]
    for g, state in saved:
        g.set_state(state)
    try:
        yield
    finally:
        for g, state in now:
            g.set_state(state)


class _Recurrence(torch.autograd.Function):
    """One GRU layer over a whole sequence, given its input projections for all steps.

    Inputs: xp (T, B, 3H) = W_i x + b_i for every step, h0 (B, H), the recurrent weight
    (3H, H) and bias (3H,), then the activation's own parameters (passed only so that autograd
    routes their gradients here). Outputs the hidden sequence (T, B, H), the last hidden state
    (B, H) and, not differentiable, the recurrent projections of every step (T, B, 3H) and the
    recurrent inputs [h0, ..., h_{T-1}] (T, B, H).

    The activation must act elementwise (each output depends only on its own input and the
    unit's parameters): the backward takes its derivative once for all steps, one number per
    entry, from ``Activation.recompute``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        variant: str,
        act: Activation,
        xp: torch.Tensor,
        h0: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        *act_params: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        steps, batch, h3 = xp.shape
        hid = h3 // 3
        ctx.rng = [(g, g.get_state()) for g in _generators(act, xp.device)]
        ctx.set_materialize_grads(False)
        states = xp.new_empty(steps + 1, batch, hid)  # [h0, h1, ..., hT]: no copies to shift
        states[0] = h0
        hproj = xp.new_empty(steps, batch, h3)  # recurrent projections [r, z, n]
        gates = xp.new_empty(steps, batch, 2 * hid)  # sigmoid outputs [r, z]
        pre = xp.new_empty(steps, batch, hid)  # the activation's inputs
        h = h0
        step = act.over_sequence(pre)  # a unit that draws random numbers draws them all here
        if variant == "pytorch":
            # Same operations in the same order as ATen's GRU cell, so tanh matches nn.GRU.
            weight_t = weight.t()
            for t in range(steps):
                hp = torch.addmm(bias, h, weight_t, out=hproj[t])
                g = torch.add(hp[:, : 2 * hid], xp[t, :, : 2 * hid], out=gates[t]).sigmoid_()
                a = torch.add(xp[t, :, 2 * hid :], hp[:, 2 * hid :] * g[:, :hid], out=pre[t])
                n = step(a, t)
                h = torch.add((h - n).mul_(g[:, hid:]), n, out=states[t + 1])
        else:
            w_rz_t, w_n_t = weight[: 2 * hid].t(), weight[2 * hid :].t()
            b_rz, b_n = bias[: 2 * hid], bias[2 * hid :]
            for t in range(steps):
                hp = hproj[t]
                torch.addmm(b_rz, h, w_rz_t, out=hp[:, : 2 * hid])
                g = torch.add(hp[:, : 2 * hid], xp[t, :, : 2 * hid], out=gates[t]).sigmoid_()
                torch.addmm(b_n, g[:, :hid] * h, w_n_t, out=hp[:, 2 * hid :])
                a = torch.add(xp[t, :, 2 * hid :], hp[:, 2 * hid :], out=pre[t])
                n = step(a, t)
                h = torch.addcmul(h, g[:, hid:], n - h, out=states[t + 1])
        ctx.save_for_backward(weight, states, gates, pre, hproj)
        ctx.variant, ctx.act = variant, act
        hprev = states[:-1]
        ctx.mark_non_differentiable(hproj, hprev)
        return states[1:], states[-1].clone(), hproj, hprev

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor | None, dlast: torch.Tensor | None, *_: Any) -> tuple:
        weight, states, gates, pre, hproj = ctx.saved_tensors
        out, hprev = states[1:], states[:-1]
        steps, batch, hid = out.shape
        if dout is None:
            dout = torch.zeros_like(out)

        # One call for all steps, with the steps' draws (the over_sequence contract): a
        # composite unit such as TLU's twin then costs 1/T of the ops.
        with _replayed_rng(ctx.rng):
            again = ctx.act.recompute(pre)
        dact, cand = again.slope, again.value  # cand: the outputs, as the forward made them

        r, z = gates[..., :hid], gates[..., hid:]

        # dproj[t]: gradient w.r.t. the recurrent projections of step t, [r, z, n].
        dproj = out.new_empty(steps, batch, 3 * hid)
        dh_all = out.new_empty(steps, batch, hid)  # total gradient w.r.t. each h_t
        dh_all[-1] = dout[-1] if dlast is None else dout[-1] + dlast
        keep = 1 - z
        if ctx.variant == "pytorch":
            k_pre = dact * keep  # d h' / d (activation input)
            k_z = z * keep * (hprev - cand)
            k_r = r * (1 - r) * hproj[..., 2 * hid :]
            dpre = out.new_empty(steps, batch, hid)
            for t in range(steps - 1, -1, -1):
                dh, dp = dh_all[t], dproj[t]
                da = torch.mul(dh, k_pre[t], out=dpre[t])
                torch.mul(da, k_r[t], out=dp[:, :hid])
                torch.mul(dh, k_z[t], out=dp[:, hid : 2 * hid])
                torch.mul(da, r[t], out=dp[:, 2 * hid :])
                if t:
                    torch.addcmul(dout[t - 1], dh, z[t], out=dh_all[t - 1]).addmm_(dp, weight)
            dh0 = torch.addmm(dh_all[0] * z[0], dproj[0], weight)
            dxp = torch.cat([dproj[..., : 2 * hid], dpre], dim=-1)
            dweight = dproj.flatten(0, 1).t() @ hprev.flatten(0, 1)
            dcand = dh_all * keep
        else:
            k_pre = dact * z
            k_z = z * keep * (cand - hprev)
            k_r = r * (1 - r) * hprev
            w_rz, w_n = weight[: 2 * hid], weight[2 * hid :]
            for t in range(steps - 1, -1, -1):
                dh, dp = dh_all[t], dproj[t]
                da = torch.mul(dh, k_pre[t], out=dp[:, 2 * hid :])
                drh = da @ w_n  # gradient w.r.t. r * h
                torch.mul(drh, k_r[t], out=dp[:, :hid])
                torch.mul(dh, k_z[t], out=dp[:, hid : 2 * hid])
                if t:
                    dprev = torch.addcmul(dout[t - 1], dh, keep[t], out=dh_all[t - 1])
                else:
                    dprev = dh * keep[t]
                dprev.addcmul_(drh, r[t]).addmm_(dp[:, : 2 * hid], w_rz)
            dh0 = dprev
            dxp = dproj
            flat = dproj.flatten(0, 1)
            dweight = torch.cat(
                [
                    flat[:, : 2 * hid].t() @ hprev.flatten(0, 1),
                    flat[:, 2 * hid :].t() @ (r * hprev).flatten(0, 1),
                ]
            )
            dcand = dh_all * z
        dbias = dproj.sum((0, 1))

        dparams = again.param_grads(dcand)
        return (None, None, dxp, dh0, dweight, dbias, *dparams)


class RecurrentLinear(nn.Linear):
    """The recurrent projection W_h h + b_h, applied step by step inside the fused recurrence.

    Afterwards the layer calls it once more with the projections already computed, which it
    returns unchanged: its forward hooks (LSUV init, diagnostics) then see every step's output,
    as they would for a per-step module call, at the cost of no matmul.
    """

    def forward(self, x: torch.Tensor, computed: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x) if computed is None else computed


class GRULayer(nn.Module):
    """One GRU layer: input projection for all steps in one matmul, then the recurrence."""

    def __init__(self, input_size: int, hidden_size: int, act: Activation, variant: str) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.variant = variant
        self.ih = nn.Linear(input_size, 3 * hidden_size)
        self.hh = RecurrentLinear(hidden_size, 3 * hidden_size)
        self.act = act
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.GRU's default, U(-1/sqrt(H), 1/sqrt(H)) for every tensor; configs override it."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (*self.ih.parameters(), *self.hh.parameters()):
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (T, B, in), h0 (B, H) -> hidden sequence (T, B, H), last hidden state (B, H).

        Under autocast the input projection follows it, but the recurrence runs in the
        weights' own precision: its hand-written kernels take one dtype throughout.
        """
        xp = self.ih(x)
        dtype = self.hh.weight.dtype
        with torch.autocast(xp.device.type, enabled=False):
            out, last, hproj, hprev = _Recurrence.apply(
                self.variant,
                self.act,
                xp.to(dtype),
                h0.to(dtype),
                self.hh.weight,
                self.hh.bias,
                *self.act.parameters(),
            )
        # For hooks only: each step's recurrent input is the previous hidden state (the
        # charrnn candidate block's is r * h).
        self.hh(hprev, computed=hproj)
        return out, last


class CharGRU(nn.Module):
    """One-hot or embedded characters -> L GRU layers -> dropout -> linear decoder.

    Time-major like nn.GRU: ``forward(x (T, B) long, hidden (L, B, H) or None)`` returns
    logits (T, B, V) and the final hidden state (L, B, H). Dropout goes between layers and
    before the decoder, as in char-rnn.
    """

    def __init__(
        self,
        act: ActivationFactory,
        vocab_size: int,
        num_outputs: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.0,
        variant: str = "pytorch",
        embedding: str = "onehot",
        embed_dim: int = 64,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(
                f"model.variant={variant!r} is unknown; choose from: {', '.join(VARIANTS)}"
            )
        if embedding not in EMBEDDINGS:
            raise ValueError(
                f"model.embedding={embedding!r} is unknown; choose from: {', '.join(EMBEDDINGS)}"
            )
        for key, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"model.{key}={value!r} must be a positive integer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout={dropout!r} must lie in [0, 1)")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding = embedding
        self.encoder = nn.Embedding(vocab_size, embed_dim) if embedding == "embed" else None
        width = embed_dim if embedding == "embed" else vocab_size
        layers = []
        for _ in range(num_layers):
            unit = act(hidden_size, channel_dim=-1)
            if unit.out_channels(hidden_size) != hidden_size:
                raise ValueError(
                    f"activation {type(unit).__name__} changes the channel count; a GRU "
                    "candidate needs one output per hidden unit"
                )
            layers.append(GRULayer(width, hidden_size, unit, variant))
            width = hidden_size
        self.layers = nn.ModuleList(layers)
        self.drop = Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, num_outputs)

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        w = self.decoder.weight
        return w.new_zeros(self.num_layers, batch_size, self.hidden_size)

    def forward(
        self, x: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if hidden is None:
            hidden = self.init_hidden(x.shape[1])
        if self.encoder is not None:
            seq = self.encoder(x)
        else:
            seq = F.one_hot(x, self.vocab_size).to(self.decoder.weight.dtype)
        last = []
        for i, layer in enumerate(self.layers):
            if i:
                seq = self.drop(seq)
            seq, h = layer(seq, hidden[i])
            last.append(h)
        return self.decoder(self.drop(seq)), torch.stack(last)

    def weight_layers(self) -> list[tuple[nn.Module, Activation | None]]:
        """Input and recurrent projections of each layer (followed by its candidate unit), then
        the decoder. Every one fires its forward hooks once per forward pass with the whole
        sequence's outputs (T, B, 3H) or (T, B, V)."""
        pairs: list[tuple[nn.Module, Activation | None]] = []
        for layer in self.layers:
            pairs += [(layer.ih, layer.act), (layer.hh, layer.act)]
        return [*pairs, (self.decoder, None)]


@register_model("chargru")
def chargru(
    act: ActivationFactory,
    *,
    num_outputs: int,
    in_channels: int,
    hidden_size: int = 128,
    num_layers: int = 2,
    dropout: float = 0.0,
    variant: str = "pytorch",
    embedding: str = "onehot",
    embed_dim: int = 64,
) -> CharGRU:
    """char-rnn's defaults (rnn_size 128, num_layers 2, dropout 0); in_channels = vocab size."""
    return CharGRU(
        act,
        vocab_size=in_channels,
        num_outputs=num_outputs,
        hidden_size=hidden_size,
        num_layers=num_layers,
        dropout=dropout,
        variant=variant,
        embedding=embedding,
        embed_dim=embed_dim,
    )
