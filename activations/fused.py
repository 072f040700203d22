"""Fast paths for the units that are slow when written naively or in torch's own kernels: RReLU,
MPELU, TLU, ELU and PReLU.

Written with torch.where/exp/tanh and left to autograd, RReLU, MPELU and TLU cost 5-8x ReLU's
forward+backward on CPU and keep several input-sized tensors alive for backward; torch's ELU
and PReLU (``F.elu``, ``F.prelu``) took 2.6x and 7x ReLU's time on bf16 maps on this CPU. Here
each is an ``autograd.Function`` that saves one input-sized tensor (the input; for RReLU the
per-element slope) plus its parameters, computes gradients analytically, and runs its
elementwise work as a few pure :class:`~activations.backend.Kernel` functions that
``torch.compile`` fuses into one loop each (see ``activations.backend`` for the switch). ELU is
MPELU's kernels with alpha fixed and beta = 1.

Choices the measurements forced (docs/papers.md §9 and our bench):
- Nothing boolean is saved: compiled kernels that stored an ``x <= 0`` mask ran ~20x slower.
- Exponentials are taken of ``min(x, 0)`` only, so ``exp`` cannot overflow to inf and turn a
  positive input's gradient into NaN.
- TLU's tanh is computed from ``exp`` (tanh(m) = 1 - 2/(exp(2m)+1) for m <= 0): the compiled
  SLEEF tanh took twice as long as exp.
- The input gradient and the parameters' per-channel sums are separate kernels, and MPELU's two
  sums share one reduction loop (``_mpelu_grad_params``). One kernel for all three outputs makes
  Inductor store the shared exp(beta * m) as an input-sized float32 buffer between a pointwise
  loop and a reduction loop (40 ms on a 12.6M-element bf16 map against 18 ms for the two
  kernels, measured once, 2 threads). Two kernels against the three of before (input gradient,
  alpha sum, beta sum): equal within this machine's noise in an A/B on NIN-sized maps.

Per-channel layout: every kernel sees a 3-d view (A, C, B) with the channels in the middle and
the parameters as (C, 1). Channel-first maps (N, C, H, W) give (N, C, H*W); channels-last data,
whether a (T, N, C) sequence (``channel_dim=-1``), an (N, C) linear output, or a conv map in
``channels_last`` memory format, gives (rows, C, 1). Parameter gradients are then always sums
over dims 0 and 2, i.e. over every non-channel dimension, in float32 or wider.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.autograd.function import FunctionCtx, once_differentiable

from activations.backend import Kernel, kernel

# ----------------------------------------------------------------------------------------------
# Layout


class ChannelView:
    """The (A, C, B) view of a tensor with its channels at ``channel_dim``, and the way back."""

    def __init__(self, x: torch.Tensor, channel_dim: int) -> None:
        self.shape = x.shape
        self.dim = channel_dim if channel_dim >= 0 else x.dim() + channel_dim
        self.channels = x.shape[self.dim]
        moved = x.movedim(self.dim, -1)
        # channels last in memory: the channel is the fastest-moving index, so (rows, C, 1)
        self.last = self.dim == x.dim() - 1 or moved.is_contiguous()
        self.moved_shape = moved.shape

    def to3d(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (shaped like the input) as (A, C, B); a copy only if its strides disagree."""
        if self.last:
            return t.movedim(self.dim, -1).reshape(-1, self.channels, 1)
        return t.reshape(t.shape[0], self.channels, -1)  # channel-first: dim is 1 here

    def back(self, t3: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`to3d` on a kernel output."""
        if self.last:
            return t3.view(self.moved_shape).movedim(-1, self.dim)
        return t3.view(self.shape)

    def param(self, p: torch.Tensor) -> torch.Tensor:
        """A (C,) or shared (1,) parameter as a contiguous (C, 1) column."""
        return p.detach().expand(self.channels).contiguous().view(self.channels, 1)

    @staticmethod
    def grad_of(p: torch.Tensor, per_channel_sum: torch.Tensor) -> torch.Tensor:
        """A parameter's gradient from the per-channel sums (summed again if it is shared)."""
        g = per_channel_sum.sum().reshape(1) if p.numel() == 1 else per_channel_sum
        return g.to(p.dtype)


def _wide(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype the arithmetic runs in: at least the parameters' (bf16 x, fp32 alpha)."""
    dtype = x.dtype
    for p in params:
        dtype = torch.promote_types(dtype, p.dtype)
    return x.to(dtype)


# ----------------------------------------------------------------------------------------------
# Kernels: pure functions of (A, C, B) tensors and (C, 1) parameters.


@kernel
def _mpelu_forward(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    xw = _wide(x, alpha, beta)
    neg = alpha * (torch.exp(beta * xw.clamp(max=0)) - 1)
    return torch.where(xw > 0, xw, neg).to(x.dtype)


@kernel
def _mpelu_grad_input(
    g: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    gw, xw = _wide(g, alpha, beta), _wide(x, alpha, beta)
    return torch.where(xw > 0, gw, gw * (alpha * beta) * torch.exp(beta * xw.clamp(max=0))).to(
        g.dtype
    )


@kernel
def _mpelu_grad_params(
    g: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel sums for alpha and beta, both in one reduction loop."""
    gw, m = _wide(g, alpha, beta), _wide(x, alpha, beta).clamp(max=0)
    e = torch.exp(beta * m)
    return (gw * (e - 1)).sum(dim=(0, 2)), (gw * alpha * m * e).sum(dim=(0, 2))


def _one_minus_tanh(m: torch.Tensor) -> torch.Tensor:
    """2/(exp(2m)+1) = 1 - tanh(m), overflow-free for m <= 0."""
    return 2 / (torch.exp(2 * m) + 1)


@kernel
def _tlu_forward(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    xw = _wide(x, alpha)
    return torch.where(xw >= 0, xw, alpha * (1 - _one_minus_tanh(xw.clamp(max=0)))).to(x.dtype)


@kernel
def _tlu_grad_input(g: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    gw, xw = _wide(g, alpha), _wide(x, alpha)
    u = _one_minus_tanh(xw.clamp(max=0))  # 1 - tanh^2 = u (2 - u)
    return torch.where(xw >= 0, gw, gw * alpha * (u * (2 - u))).to(g.dtype)


@kernel
def _tlu_grad_alpha(g: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    gw, xw = _wide(g, alpha), _wide(x, alpha)
    return (gw * (1 - _one_minus_tanh(xw.clamp(max=0)))).sum(dim=(0, 2))


@kernel
def _prelu_forward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    xw = _wide(x, w)
    return torch.where(xw > 0, xw, w * xw).to(x.dtype)


@kernel
def _prelu_backward(
    g: torch.Tensor, x: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input gradient and the per-channel sum of g * min(x, 0) for the slope, in one pass."""
    gw, xw = _wide(g, w), _wide(x, w)
    gx = torch.where(xw > 0, gw, w * gw).to(g.dtype)
    return gx, (gw * xw.clamp(max=0)).sum(dim=(0, 2))


@kernel
def _rrelu_forward(
    x: torch.Tensor, hi: torch.Tensor, lo: torch.Tensor, lower: float, upper: float
) -> tuple[torch.Tensor, torch.Tensor]:
    a = lower + (upper - lower) * uniform_from_bits(hi, lo, x.dtype)
    slope = torch.where(x >= 0, 1.0, 1 / a).to(x.dtype)
    return x * slope, slope


# ----------------------------------------------------------------------------------------------
# RReLU's random draws (shared with its reference twin, so both see the same a for one seed)

#: bits of resolution per uniform draw: a takes 2**14 equally spaced values in (lower, upper).
UNIFORM_BITS = 14
_HALF = 2 ** (UNIFORM_BITS // 2)


def random_bits(
    x: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two uint8 tensors laid out like ``x``, whose low 7 bits each are independent and uniform.

    They are the two halves of one buffer of 31-bit words from ``generator``'s ``random_``:
    two draws per word make this 3-4x cheaper than ``torch.rand``, whose single-threaded float
    draws alone cost more than ReLU's whole forward and backward on this CPU. Bytes rather than
    16-bit halves because the compiled CPU kernels vectorise uint8 loads but not int16 ones
    (scalar code ran 4x slower); 7 bits per byte because the top byte of each word has only 7.
    """
    n = x.numel()
    words = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device)
    _fill_random(words, generator)
    raw = words.view(torch.uint8)
    strides = torch.empty_like(x, dtype=torch.uint8).stride()  # x's memory format
    return raw.as_strided(x.shape, strides, 0), raw.as_strided(x.shape, strides, n)


#: words per independently seeded chunk of a large CPU draw (see ``_fill_random``)
DRAW_CHUNK = 1 << 20


@functools.cache
def _draw_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="actlab-draw")


def _fill_random(words: torch.Tensor, generator: torch.Generator | None) -> None:
    """``words.random_()``, split on the CPU across torch's threads.

    torch's CPU generator draws one word at a time under a lock: 8 ms for RReLU's draws on a
    6.3M-element map, a whole ReLU forward+backward, however many cores there are. A draw of
    more than ``DRAW_CHUNK`` words is cut into chunks of that size, each filled from its own
    generator seeded by one draw from ``generator``, and the chunks run on a thread pool (the
    draw releases the GIL). The chunks depend only on the size, so a seed gives the same bits
    with any thread count.
    """
    n = words.numel()
    if words.device.type != "cpu" or n <= DRAW_CHUNK:
        words.random_(generator=generator)
        return
    chunks = words.split(DRAW_CHUNK)
    seeds = torch.randint(2**62, (len(chunks),), generator=generator).tolist()

    def fill(chunk: torch.Tensor, seed: int) -> None:
        chunk.random_(generator=torch.Generator().manual_seed(seed))

    workers = min(torch.get_num_threads(), len(chunks))
    if workers == 1:
        for chunk, seed in zip(chunks, seeds, strict=True):
            fill(chunk, seed)
        return
    list(_draw_pool(workers).map(fill, chunks, seeds))


def keep_draws_out_of_compiled_graphs() -> None:
    """Call before ``torch.compile`` of a model that may hold RReLU (the trainer does).

    Traced inside a compiled channels_last model, :func:`random_bits` fails in AOTAutograd
    (setStorage out of bounds), so it must stay out of the graph (the draw itself is already
    vectorised). Marking it at import would import ``torch._dynamo``, 1.7 s of every start-up
    that compiles nothing; RReLU looks the function up here at each call, so marking it now
    takes effect.
    """
    global random_bits
    if not getattr(random_bits, "_actlab_uncompiled", False):
        random_bits = torch.compiler.disable(random_bits)
        random_bits._actlab_uncompiled = True  # type: ignore[attr-defined]


@kernel
def dropout_scale(hi: torch.Tensor, lo: torch.Tensor, cut: int, scale: float) -> torch.Tensor:
    """Inverted dropout's multiplier from :func:`random_bits`: 0 where the 14-bit draw k is
    below ``cut``, else ``scale``; keeps with probability 1 - cut / 2**14 (float32)."""
    return torch.where(_cell(hi, lo, torch.int32) >= cut, scale, 0.0)


def uniform_from_bits(hi: torch.Tensor, lo: torch.Tensor, like: torch.dtype) -> torch.Tensor:
    """U(0, 1) from 14 random bits, at cell midpoints (k + 1/2) / 2**14, so its mean is 1/2."""
    return (_cell(hi, lo, torch.promote_types(like, torch.float32)) + 0.5) * 2.0**-UNIFORM_BITS


def _cell(hi: torch.Tensor, lo: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The 14-bit draw k in [0, 2**14) from the low 7 bits of each byte, in ``dtype``."""
    return (hi & (_HALF - 1)).to(dtype) * _HALF + (lo & (_HALF - 1)).to(dtype)


# ----------------------------------------------------------------------------------------------
# autograd Functions


def _per_channel_forward(
    ctx: FunctionCtx, forward: Kernel, x: torch.Tensor, cdim: int, *params: torch.Tensor
) -> torch.Tensor:
    """The forward of a unit with per-channel parameters: save only the input and the
    parameters, run ``forward`` on the (A, C, B) view in the input's own precision."""
    view = ChannelView(x, cdim)
    ctx.save_for_backward(x, *params)
    ctx.cdim = cdim
    with torch.autocast(x.device.type, enabled=False):
        return view.back(forward(view.to3d(x), *(view.param(p) for p in params)))


class _MPELU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, cdim: int
    ) -> torch.Tensor:
        return _per_channel_forward(ctx, _mpelu_forward, x, cdim, alpha, beta)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, alpha, beta = ctx.saved_tensors
        view = ChannelView(x, ctx.cdim)
        g3, x3, a, b = view.to3d(g), view.to3d(x), view.param(alpha), view.param(beta)
        gx = ga = gb = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                gx = view.back(_mpelu_grad_input(g3, x3, a, b))
            if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:  # not for ELU
                sum_a, sum_b = _mpelu_grad_params(g3, x3, a, b)
                ga = view.grad_of(alpha, sum_a) if ctx.needs_input_grad[1] else None
                gb = view.grad_of(beta, sum_b) if ctx.needs_input_grad[2] else None
        return gx, ga, gb, None


class _TLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, alpha: torch.Tensor, cdim: int) -> torch.Tensor:
        return _per_channel_forward(ctx, _tlu_forward, x, cdim, alpha)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, alpha = ctx.saved_tensors
        view = ChannelView(x, ctx.cdim)
        g3, x3, a = view.to3d(g), view.to3d(x), view.param(alpha)
        gx = ga = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                gx = view.back(_tlu_grad_input(g3, x3, a))
            if ctx.needs_input_grad[1]:  # alpha learnable (by default a fixed buffer)
                ga = view.grad_of(alpha, _tlu_grad_alpha(g3, x3, a))
        return gx, ga, None


class _PReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, w: torch.Tensor, cdim: int) -> torch.Tensor:
        return _per_channel_forward(ctx, _prelu_forward, x, cdim, w)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        view = ChannelView(x, ctx.cdim)
        with torch.autocast(x.device.type, enabled=False):
            gx, sum_w = _prelu_backward(view.to3d(g), view.to3d(x), view.param(w))
        return view.back(gx), view.grad_of(w, sum_w), None


class _RReLU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: torch.Tensor,
        bits: tuple[torch.Tensor, torch.Tensor],
        lower: float,
        upper: float,
    ) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            y, slope = _rrelu_forward(x, *bits, lower, upper)
        ctx.save_for_backward(slope)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (slope,) = ctx.saved_tensors
        return g * slope, None, None, None


def mpelu(
    x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, channel_dim: int
) -> torch.Tensor:
    """MPELU fast path; ``alpha``/``beta`` are (C,) or shared (1,)."""
    return _MPELU.apply(x, alpha, beta, channel_dim)


def elu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """ELU fast path: MPELU's kernels with alpha fixed and beta = 1 (no parameter gradients)."""
    a = torch.full((1,), alpha, device=x.device)
    return _MPELU.apply(x, a, torch.ones_like(a), -1 if x.dim() < 2 else 1)


def prelu(x: torch.Tensor, weight: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """PReLU fast path; ``weight`` is (C,) or shared (1,)."""
    return _PReLU.apply(x, weight, channel_dim)


def tlu(x: torch.Tensor, alpha: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """TLU fast path; ``alpha`` is (C,) or shared (1,), learnable or a buffer."""
    return _TLU.apply(x, alpha, channel_dim)


def rrelu_train(
    x: torch.Tensor, bits: tuple[torch.Tensor, torch.Tensor], lower: float, upper: float
) -> torch.Tensor:
    """RReLU training fast path with the draws in ``bits`` (from :func:`random_bits`)."""
    return _RReLU.apply(x, bits, lower, upper)
