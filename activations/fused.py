"""Fast paths for the units that are slow when written naively or in torch's own kernels: RReLU,
MPELU, TLU, ELU and PReLU.

Written with torch.where/exp/tanh and left to autograd, RReLU, MPELU and TLU cost 5-8x ReLU's
forward+backward on CPU and keep several input-sized tensors alive for backward; torch's ELU
and PReLU (``F.elu``, ``F.prelu``) took 2.6x and 7x ReLU's time on bf16 maps on this CPU. Here
each is an ``autograd.Function`` that saves one input-sized tensor (the input; MPELU and TLU
also their output, which the next layer keeps anyway; RReLU its slopes) plus its parameters,
computes gradients analytically, and runs its elementwise work as a few pure
:class:`~activations.backend.Kernel` functions that ``torch.compile`` fuses into one loop
each (see ``activations.backend`` for the switch). ELU is MPELU's kernels with alpha fixed
and beta = 1.

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
  alpha sum, beta sum): equal within this machine's noise in an A/B on NIN-sized maps. On
  channels_last maps Inductor still writes exp(beta * m) to a float32 buffer ahead of the
  reduction loop; giving each sum its own exponential removes the buffer but not the time
  (52.6 against 50.7 ms on a 25.2M-element bf16 map): the kernels are bound by ``exp``
  (about 20 ms per pass over that map, as long as ReLU's whole forward), not by memory. So on
  the CPU MPELU's backward takes alpha exp(beta m) from the saved output instead
  (``_mpelu_exp_terms``): forward+backward 80.1 to 48.2 ms on that map in bf16. TLU's does
  the same with tanh(m) = y / alpha (``_tlu_negative_slope``): its input gradient on that map
  23.1 to 9.2 ms in bf16, 31.8 to 21.3 in fp32 (ReLU's backward 6.9 and 15.7; AVX2 EPYC, 2
  threads, medians in one process).
- RReLU draws its slopes from a hash of each element's position (``counter_cells``) inside
  its forward kernel and keeps them for the backward: once page faults stopped dominating
  (experiments.heap), hashing again in the backward cost more than the stored tensor.

Per-channel layout: every kernel sees a 3-d view (A, C, B) with the channels in the middle and
the parameters as (C, 1). Channel-first maps (N, C, H, W) give (N, C, H*W); channels-last data,
whether a (T, N, C) sequence (``channel_dim=-1``), an (N, C) linear output, or a conv map in
``channels_last`` memory format, gives (rows, C, 1). Parameter gradients are sums over every
non-channel dimension, in float32 or wider: the kernels take them over that view cut into
chunks of rows, (P, A/P, C, B) (``ChannelView.chunked``), and the P partial sums are added after.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch.autograd.function import FunctionCtx, once_differentiable

from activations.backend import Kernel, kernel
from activations.base import Recomputed

# ----------------------------------------------------------------------------------------------
# Layout

#: the rows of a channels-last map are cut into at most this many chunks for the parameter sums
SUM_CHUNKS = 256


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

    def chunked(self, t3: torch.Tensor) -> torch.Tensor:
        """A :meth:`to3d` tensor as (P, A/P, C, B) for the parameters' sums, which the kernels
        take over dims 1 and 3 into (P, C) partial sums.

        Why: summed over the rows of a channels-last (rows, C, 1) map, Inductor runs strided
        loops per block of channels at a third of the memory bandwidth; cut into P chunks of
        rows, it runs the chunks in parallel, each vectorised along C. MPELU's two sums on a
        25.2M-element fp32 map: 39 against 16 ms; PReLU's backward 33 against 19 (AVX2 EPYC, 2
        threads; ReLU's backward 8-10). P is the largest divisor of the rows up to SUM_CHUNKS,
        so no row is left over (a GRU's 2,500: 250; 0.31 against 0.25 ms for MPELU's sums); a
        channel-first map keeps P = 1."""
        rows = t3.shape[0]
        chunks = _row_chunks(rows) if self.last else 1
        return t3.view(chunks, rows // chunks, *t3.shape[1:])

    def param(self, p: torch.Tensor) -> torch.Tensor:
        """A (C,) or shared (1,) parameter as a contiguous (C, 1) column."""
        return p.detach().expand(self.channels).contiguous().view(self.channels, 1)

    @staticmethod
    def grad_of(p: torch.Tensor, partial_sums: torch.Tensor) -> torch.Tensor:
        """A parameter's gradient from the (P, C) partial sums of :meth:`chunked` tensors
        (summed over the channels too if it is shared)."""
        per_channel_sum = partial_sums.sum(0)
        g = per_channel_sum.sum().reshape(1) if p.numel() == 1 else per_channel_sum
        return g.to(p.dtype)


@functools.cache
def _row_chunks(rows: int) -> int:
    """The largest divisor of ``rows`` that is at most SUM_CHUNKS."""
    return max(d for d in range(1, min(rows, SUM_CHUNKS) + 1) if rows % d == 0)


#: How much dearer a unit's plain-autograd twin is than its compiled kernels, which moves
#: ``auto``'s threshold down by that factor (``backend.path_for``). Forward+backward with the
#: parameter gradients over a GRU's 50x50x128 sequence (the recompute in its backward), 2
#: threads: MPELU's twin 2.78 ms against 1.72 compiled, PReLU's (``F.prelu``) 1.84 against 1.14.
#: TLU's twin took 1.37 ms there against 0.53 for its kernels once these gave output and slope
#: in one pass (``tlu_recompute``; 1.60 against 0.92 with alpha learned); ELU's (``F.elu``, 0.54
#: against 1.04) keeps the default. ELU runs MPELU's kernels, but its unit only calls them from
#: AUTO_MIN_NUMEL up. RReLU's twin hashes its draws in a dozen eager int32 ops: 4.97 against
#: 1.62 ms forward+backward on a 64x32x16x16 map, and 1.41 against 0.81 on the GRU's 50x50x128
#: (AVX2 EPYC, 2 threads).
MPELU_TWIN_COST = 4
PRELU_TWIN_COST = 4
RRELU_TWIN_COST = 4
TLU_TWIN_COST = 4


def _wide(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype the arithmetic runs in: at least the parameters' (bf16 x, fp32 alpha)."""
    dtype = x.dtype
    for p in params:
        dtype = torch.promote_types(dtype, p.dtype)
    return x.to(dtype)


# ----------------------------------------------------------------------------------------------
# Kernels: pure functions of (A, C, B) tensors and (C, 1) parameters.


@kernel(twin_cost=MPELU_TWIN_COST)
def _mpelu_forward(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    xw = _wide(x, alpha, beta)
    neg = alpha * (torch.exp(beta * xw.clamp(max=0)) - 1)
    return torch.where(xw > 0, xw, neg).to(x.dtype)


def _mpelu_exp_terms(
    x: torch.Tensor, y: torch.Tensor | None, alpha: torch.Tensor, beta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha * exp(beta m) and exp(beta m) - 1 for m = min(x, 0), both taken from the output
    ``y`` when it is given, with no exp: d = y - relu(x) is alpha (exp(beta m) - 1) on either
    side of 0 (0 for x > 0), so they are d + alpha and d / alpha (alpha must not be 0)."""
    if y is None:
        e = torch.exp(beta * x.clamp(max=0))
        return alpha * e, e - 1
    d = y - x.clamp(min=0)
    return d + alpha, d / alpha


@kernel(twin_cost=MPELU_TWIN_COST)
def _mpelu_grad_input(
    g: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor | None,
    alpha: torch.Tensor,
    beta: torch.Tensor,
) -> torch.Tensor:
    gw, xw = _wide(g, alpha, beta), _wide(x, alpha, beta)
    yw = None if y is None else _wide(y, alpha, beta)
    alpha_e, _ = _mpelu_exp_terms(xw, yw, alpha, beta)
    return torch.where(xw > 0, gw, gw * beta * alpha_e).to(g.dtype)


@kernel(twin_cost=MPELU_TWIN_COST)
def _mpelu_value_and_slope(
    x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, slope_from_output: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The output and dy/dx in one pass: the forward's and the input gradient's for g = 1 (a
    constant the compiled loop folds in), so a GRU trains to the same bits as through autograd."""
    y = _mpelu_forward.fn(x, alpha, beta)
    y_for_exp = y if slope_from_output else None
    return y, _mpelu_grad_input.fn(torch.ones_like(x), x, y_for_exp, alpha, beta)


@kernel(twin_cost=MPELU_TWIN_COST)
def _mpelu_grad_params(
    g: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor | None,
    alpha: torch.Tensor,
    beta: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The partial per-channel sums for alpha and beta over :meth:`ChannelView.chunked`
    tensors, both in one reduction loop."""
    gw, xw = _wide(g, alpha, beta), _wide(x, alpha, beta)
    yw = None if y is None else _wide(y, alpha, beta)
    alpha_e, e_minus_1 = _mpelu_exp_terms(xw, yw, alpha, beta)
    return (gw * e_minus_1).sum(dim=(1, 3)), (gw * xw.clamp(max=0) * alpha_e).sum(dim=(1, 3))


def _one_minus_tanh(m: torch.Tensor) -> torch.Tensor:
    """2/(exp(2m)+1) = 1 - tanh(m), overflow-free for m <= 0."""
    return 2 / (torch.exp(2 * m) + 1)


def _tlu_tanh(x: torch.Tensor, y: torch.Tensor | None, alpha: torch.Tensor) -> torch.Tensor:
    """tanh(m) for m = min(x, 0), from the output ``y`` when it is given, with no exp: y is
    alpha tanh(m) for x < 0 (alpha must not be 0)."""
    if y is None:
        return 1 - _one_minus_tanh(x.clamp(max=0))
    return torch.where(x < 0, y / alpha, 0.0)


def _tlu_negative_slope(
    x: torch.Tensor, y: torch.Tensor | None, alpha: torch.Tensor
) -> torch.Tensor:
    """dy/dx = alpha (1 - tanh^2 m) for x < 0; from the output y = alpha tanh(m) when it is
    given, as alpha - y^2 / alpha, with no exp and no reciprocal of exp (alpha must not be 0)."""
    if y is None:
        u = _one_minus_tanh(x.clamp(max=0))  # 1 - tanh^2 = u (2 - u)
        return alpha * (u * (2 - u))
    return alpha - y * y / alpha


@kernel(twin_cost=TLU_TWIN_COST)
def _tlu_forward(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    xw = _wide(x, alpha)
    return torch.where(xw >= 0, xw, alpha * _tlu_tanh(xw, None, alpha)).to(x.dtype)


@kernel(twin_cost=TLU_TWIN_COST)
def _tlu_grad_input(
    g: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None, alpha: torch.Tensor
) -> torch.Tensor:
    gw, xw = _wide(g, alpha), _wide(x, alpha)
    yw = None if y is None else _wide(y, alpha)
    return torch.where(xw >= 0, gw, gw * _tlu_negative_slope(xw, yw, alpha)).to(g.dtype)


@kernel(twin_cost=TLU_TWIN_COST)
def _tlu_value_and_slope(
    x: torch.Tensor, alpha: torch.Tensor, slope_from_output: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The output and dy/dx in one pass, as MPELU's (``_mpelu_value_and_slope``)."""
    y = _tlu_forward.fn(x, alpha)
    y_for_slope = y if slope_from_output else None
    return y, _tlu_grad_input.fn(torch.ones_like(x), x, y_for_slope, alpha)


@kernel(twin_cost=TLU_TWIN_COST)
def _tlu_grad_alpha(
    g: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None, alpha: torch.Tensor
) -> torch.Tensor:
    gw, xw = _wide(g, alpha), _wide(x, alpha)
    yw = None if y is None else _wide(y, alpha)
    return (gw * _tlu_tanh(xw, yw, alpha)).sum(dim=(1, 3))


@kernel(twin_cost=PRELU_TWIN_COST)
def _prelu_forward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    xw = _wide(x, w)
    return torch.where(xw > 0, xw, w * xw).to(x.dtype)


@kernel(twin_cost=PRELU_TWIN_COST)
def _prelu_backward(
    g: torch.Tensor, x: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input gradient and the partial per-channel sums of g * min(x, 0) for the slope, in
    one pass over :meth:`ChannelView.chunked` tensors."""
    gw, xw = _wide(g, w), _wide(x, w)
    gx = torch.where(xw > 0, gw, w * gw).to(g.dtype)
    return gx, (gw * xw.clamp(max=0)).sum(dim=(1, 3))


def _rrelu_inverse_a(
    x: torch.Tensor, key: torch.Tensor, lower: float, upper: float
) -> torch.Tensor:
    """1 / a for every element of ``x``, a drawn from counter i (the memory position) under
    ``key``; ``x`` is 1-d in memory order (:func:`to_flat`), and the counters are computed
    here, not read from memory."""
    index = torch.arange(x.numel(), device=x.device, dtype=torch.int32)
    return 1 / (lower + (upper - lower) * uniform_cells(key, index, x.dtype))


@kernel(twin_cost=RRELU_TWIN_COST)
def _rrelu_slopes(x: torch.Tensor, key: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    return _rrelu_inverse_a(x, key, lower, upper).to(x.dtype)


@kernel(twin_cost=RRELU_TWIN_COST)
def _rrelu_forward(
    x: torch.Tensor, key: torch.Tensor, lower: float, upper: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The output and the slopes it used, kept for the backward (g * slope). Redrawing them there
    from the output instead saves that tensor but costs the hash again: forward+backward on a
    25.2M-element map 63-71 against 47-53 ms in bf16, 47-53 against 38-40 in fp32 (2 threads,
    freed memory reused, experiments.heap)."""
    slope = torch.where(x >= 0, 1.0, _rrelu_inverse_a(x, key, lower, upper)).to(x.dtype)
    return x * slope, slope


# ----------------------------------------------------------------------------------------------
# RReLU's random draws: counter-based, computed inside its kernels (the twin computes the same)

#: bits of resolution per uniform draw: a takes 2**14 equally spaced values in (lower, upper).
UNIFORM_BITS = 14
_HALF = 2 ** (UNIFORM_BITS // 2)

# The counter hash: Chris Wellons' lowbias32 (hash-prospector, 2020) of a 32-bit Weyl sequence.
# The constants as signed int32, since torch multiplies int32 with wraparound.
_MIX1 = 0x7FEB352D
_MIX2 = 0x846CA68B - 2**32
#: counters are 32-bit: a call draws for at most this many elements
MAX_DRAWS = 2**31 - 1


def draw_key(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One call's key: an int32 tensor [offset, multiplier] (the multiplier odd) on ``x``'s
    device.

    The key is the only draw from ``generator`` (torch's default generator of ``x``'s device
    when None) a call makes; every element's number is then a hash of the key and the element's
    position (:func:`counter_cells`). The multiplier travels in the tensor rather than as a
    constant because Inductor (torch 2.14.1, CPU) folds ``arange * constant`` into a vector
    ``arange`` with that step and gets lanes 8-15 wrong when the step times the lane overflows;
    multiplied at run time, the products are exact.
    """
    device = generator.device if generator is not None else x.device
    key = torch.randint(
        -(2**31), 2**31, (2,), dtype=torch.int32, device=device, generator=generator
    )
    key[1] |= 1
    return key.to(x.device, non_blocking=True)


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int32 (torch's ``>>`` is arithmetic: it copies the sign)."""
    return (z >> bits) & ((1 << (32 - bits)) - 1)


def counter_cells(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The 14-bit draw k in [0, 2**14) of counter ``index`` under ``key`` (from
    :func:`draw_key`): the top bits of lowbias32(index * multiplier + offset), in 32-bit
    arithmetic (``index`` is taken modulo 2**32).

    Why a hash of a counter rather than a generator: torch's CPU generator fills one word at a
    time under a lock (31 ms for a 25.2M-element map's bits, 2 threads, plus reading them back
    in the kernel), and Inductor's in-kernel ``rand`` on CPU runs a scalar Philox per element
    (207 ms on the same map). Why 32 bits: AVX2 has neither a 64-bit multiply nor a 64-bit
    integer to float conversion, so SplitMix64, which this replaced, took RReLU's forward
    kernel to 50 ms on that map in float32 on an AVX2 EPYC, against 18 ms for this hash and
    8 ms for ReLU. Each call's multiplier differs, so two calls' sequences are not shifts of
    one another, and lowbias32 (an invertible mix) keeps a call's 2**32 counters distinct.
    """
    z = index.to(torch.int32) * key[1] + key[0]
    z = (z ^ _shift_right(z, 16)) * _MIX1
    z = (z ^ _shift_right(z, 15)) * _MIX2
    # lowbias32 ends with z ^= z >> 16, which leaves the top 16 bits as they are: the 14
    # taken here are the same without it
    return _shift_right(z, 32 - UNIFORM_BITS)


def uniform_cells(key: torch.Tensor, index: torch.Tensor, like: torch.dtype) -> torch.Tensor:
    """U(0, 1) at the cell midpoints (k + 1/2) / 2**14 of :func:`counter_cells`, in float32
    (float64 for float64 ``like``), so its mean is 1/2."""
    k = counter_cells(key, index).to(torch.promote_types(like, torch.float32))
    return (k + 0.5) * 2.0**-UNIFORM_BITS


def memory_order(x: torch.Tensor) -> list[int]:
    """``x``'s dims from the slowest- to the fastest-moving in memory when ``x`` is dense
    (channels_last maps: N, H, W, C), else in their logical order."""
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
    return order if x.permute(order).is_contiguous() else list(range(x.dim()))


def to_flat(t: torch.Tensor, order: list[int]) -> torch.Tensor:
    """``t`` as 1-d with its dims in ``order``: a view when ``t`` lies that way in memory,
    else a copy in that order."""
    return t.permute(order).reshape(-1)


def from_flat(flat: torch.Tensor, shape: torch.Size, order: list[int]) -> torch.Tensor:
    """Undo :func:`to_flat`: a tensor of ``shape`` laid out in memory in ``order``."""
    inverse = [order.index(d) for d in range(len(order))]
    return flat.view([shape[d] for d in order]).permute(inverse)


def memory_index(x: torch.Tensor) -> torch.Tensor:
    """Each element's counter (its memory position; for a tensor that is not dense, its
    position in a contiguous copy), shaped like ``x``: what the reference twin hashes."""
    check_draws(x)
    order = memory_order(x)
    return from_flat(torch.arange(x.numel(), device=x.device, dtype=torch.int32), x.shape, order)


def check_draws(x: torch.Tensor) -> None:
    """One clear error for a tensor too large for 32-bit counters (8 GiB of float32)."""
    if x.numel() > MAX_DRAWS:
        raise ValueError(
            f"rrelu draws from 32-bit counters: a tensor of {x.numel()} elements exceeds "
            f"{MAX_DRAWS}; use a smaller batch"
        )


# Dropout's mask: 14-bit cells from a buffer of generator words (the scheme RReLU used before
# the counters; kept for dropout so that its runs' numerics stay as they were).


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
    order = memory_order(x)  # laid out as x is
    return from_flat(raw[:n], x.shape, order), from_flat(raw[n : 2 * n], x.shape, order)


#: words per independently seeded chunk of a large CPU draw (see ``_fill_random``)
DRAW_CHUNK = 1 << 20


@functools.cache
def _draw_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="actlab-draw")


def _fill_random(words: torch.Tensor, generator: torch.Generator | None) -> None:
    """``words.random_()``, split on the CPU across torch's threads.

    torch's CPU generator draws one word at a time under a lock: 8 ms for the bits of a
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
    """Call before ``torch.compile`` of a model that may hold RReLU or dropout (the trainer does).

    Traced inside a compiled channels_last model, :func:`random_bits` failed in AOTAutograd
    (setStorage out of bounds), and a traced :func:`draw_key` would become Inductor's own
    random numbers, which differ from eager's; so both stay out of the graph (each is one cheap
    call). Marking them at import would import ``torch._dynamo``, 1.7 s of every start-up that
    compiles nothing; callers look the functions up here at each call, so marking them now
    takes effect.
    """
    global random_bits, draw_key
    random_bits, draw_key = _uncompiled(random_bits), _uncompiled(draw_key)


def _uncompiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` marked to run outside compiled graphs, once (marking it again is a no-op)."""
    if getattr(fn, "_actlab_uncompiled", False):
        return fn
    fn = torch.compiler.disable(fn)
    fn._actlab_uncompiled = True  # type: ignore[attr-defined]
    return fn


@kernel
def dropout_scale(hi: torch.Tensor, lo: torch.Tensor, cut: int, scale: float) -> torch.Tensor:
    """Inverted dropout's multiplier from :func:`random_bits`: 0 where the 14-bit draw k is
    below ``cut``, else ``scale``; keeps with probability 1 - cut / 2**14 (float32)."""
    return torch.where(_cell(hi, lo, torch.int32) >= cut, scale, 0.0)


def _cell(hi: torch.Tensor, lo: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The 14-bit draw k in [0, 2**14) from the low 7 bits of each byte, in ``dtype``."""
    return (hi & (_HALF - 1)).to(dtype) * _HALF + (lo & (_HALF - 1)).to(dtype)


# ----------------------------------------------------------------------------------------------
# autograd Functions


def _per_channel_forward(
    ctx: FunctionCtx,
    forward: Kernel,
    x: torch.Tensor,
    cdim: int,
    *params: torch.Tensor,
    keep_output: bool = False,
) -> torch.Tensor:
    """The forward of a unit with per-channel parameters: save the input (and the output with
    ``keep_output``) and the parameters, run ``forward`` on the (A, C, B) view in the input's
    own precision."""
    view = ChannelView(x, cdim)
    with torch.autocast(x.device.type, enabled=False):
        y = view.back(forward(view.to3d(x), *(view.param(p) for p in params)))
    ctx.save_for_backward(x, *((y,) if keep_output else ()), *params)
    ctx.cdim = cdim
    return y


class _MPELU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, cdim: int
    ) -> torch.Tensor:
        # the output is kept (the next layer keeps it anyway) so that the CPU backward needs no
        # exp: MPELU's kernels are bound by exp there, about ReLU's whole forward per pass
        return _per_channel_forward(ctx, _mpelu_forward, x, cdim, alpha, beta, keep_output=True)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, y, alpha, beta = ctx.saved_tensors
        view = ChannelView(x, ctx.cdim)
        g3, x3, a, b = view.to3d(g), view.to3d(x), view.param(alpha), view.param(beta)
        y3 = view.to3d(y) if _terms_from_output(x, alpha) else None
        gx = ga = gb = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                gx = view.back(_mpelu_grad_input(g3, x3, y3, a, b))
            if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:  # not for ELU
                ga, gb = _mpelu_param_grads(view, g3, x3, y3, alpha, beta)
                ga = ga if ctx.needs_input_grad[1] else None
                gb = gb if ctx.needs_input_grad[2] else None
        return gx, ga, gb, None


def _terms_from_output(x: torch.Tensor, alpha: torch.Tensor) -> bool:
    """Whether MPELU's and TLU's backward take their exp terms from the saved output: on a GPU
    exp is free and an extra read is not; an alpha of exactly 0 loses them from the output
    (y = 0 for x < 0)."""
    return x.device.type == "cpu" and bool(alpha.ne(0).all())


def _mpelu_param_grads(
    view: ChannelView,
    g3: torch.Tensor,
    x3: torch.Tensor,
    y3: torch.Tensor | None,
    alpha: torch.Tensor,
    beta: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha's and beta's gradients from the (A, C, B) views of dL/dy, x and (or None) y."""
    chunk = view.chunked
    sum_a, sum_b = _mpelu_grad_params(
        chunk(g3), chunk(x3), None if y3 is None else chunk(y3), view.param(alpha), view.param(beta)
    )
    return view.grad_of(alpha, sum_a), view.grad_of(beta, sum_b)


class _TLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, alpha: torch.Tensor, cdim: int) -> torch.Tensor:
        # the output is kept, as MPELU's, so that the CPU backward needs no exp
        return _per_channel_forward(ctx, _tlu_forward, x, cdim, alpha, keep_output=True)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, y, alpha = ctx.saved_tensors
        view = ChannelView(x, ctx.cdim)
        g3, x3, a = view.to3d(g), view.to3d(x), view.param(alpha)
        y3 = view.to3d(y) if _terms_from_output(x, alpha) else None
        gx = ga = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                gx = view.back(_tlu_grad_input(g3, x3, y3, a))
            if ctx.needs_input_grad[1]:  # alpha learnable (by default a fixed buffer)
                ga = _tlu_alpha_grad(view, g3, x3, y3, alpha)
        return gx, ga, None


def _tlu_alpha_grad(
    view: ChannelView,
    g3: torch.Tensor,
    x3: torch.Tensor,
    y3: torch.Tensor | None,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """alpha's gradient from the (A, C, B) views of dL/dy, x and (or None) y."""
    chunk = view.chunked
    sums = _tlu_grad_alpha(
        chunk(g3), chunk(x3), None if y3 is None else chunk(y3), view.param(alpha)
    )
    return view.grad_of(alpha, sums)


class _PReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, w: torch.Tensor, cdim: int) -> torch.Tensor:
        return _per_channel_forward(ctx, _prelu_forward, x, cdim, w)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        view = ChannelView(x, ctx.cdim)
        g3 = view.to3d(g)
        with torch.autocast(x.device.type, enabled=False):
            gx, sum_w = _prelu_backward(view.chunked(g3), view.chunked(view.to3d(x)), view.param(w))
        return view.back(gx.view(g3.shape)), view.grad_of(w, sum_w), None


class _RReLU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, x: torch.Tensor, key: torch.Tensor, lower: float, upper: float
    ) -> torch.Tensor:
        order = memory_order(x)
        with torch.autocast(x.device.type, enabled=False):
            y, slope = _rrelu_forward(to_flat(x, order), key, lower, upper)
        ctx.save_for_backward(slope)  # flat, in x's memory order
        ctx.order, ctx.shape = order, x.shape
        return from_flat(y, x.shape, order)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (slope,) = ctx.saved_tensors
        gx = to_flat(g, ctx.order) * slope
        return from_flat(gx, ctx.shape, ctx.order), None, None, None


def mpelu(
    x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, channel_dim: int
) -> torch.Tensor:
    """MPELU fast path; ``alpha``/``beta`` are (C,) or shared (1,)."""
    return _MPELU.apply(x, alpha, beta, channel_dim)


def mpelu_recompute(
    x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, channel_dim: int
) -> Recomputed:
    """MPELU over a whole sequence for a recurrence's backward (``Activation.recompute``):
    output and slope in one pass, the parameters' sums in one more when asked, against the
    autograd default's five (forward, then input gradient and sums twice over)."""
    view = ChannelView(x, channel_dim)
    x3, a, b = view.to3d(x), view.param(alpha), view.param(beta)
    from_output = _terms_from_output(x, alpha)
    with torch.autocast(x.device.type, enabled=False):
        y3, slope3 = _mpelu_value_and_slope(x3, a, b, from_output)
    saved_y3 = y3 if from_output else None

    def param_grads(g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        with torch.autocast(g.device.type, enabled=False):
            return _mpelu_param_grads(view, view.to3d(g), x3, saved_y3, alpha, beta)

    return Recomputed(view.back(y3), view.back(slope3), param_grads)


def tlu_recompute(
    x: torch.Tensor, alpha: torch.Tensor, channel_dim: int, learned: bool
) -> Recomputed:
    """TLU over a whole sequence for a recurrence's backward (``Activation.recompute``):
    output and slope in one pass, alpha's sums in one more when it is ``learned`` (a
    parameter rather than a buffer)."""
    view = ChannelView(x, channel_dim)
    x3 = view.to3d(x)
    from_output = _terms_from_output(x, alpha)
    with torch.autocast(x.device.type, enabled=False):
        y3, slope3 = _tlu_value_and_slope(x3, view.param(alpha), from_output)
    saved_y3 = y3 if from_output else None

    def param_grads(g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if not learned:
            return ()
        with torch.autocast(g.device.type, enabled=False):
            return (_tlu_alpha_grad(view, view.to3d(g), x3, saved_y3, alpha),)

    return Recomputed(view.back(y3), view.back(slope3), param_grads)


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


def rrelu_slopes(like: torch.Tensor, key: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    """The negative-side slopes 1 / a that :func:`rrelu_train` of a tensor shaped and laid out
    like ``like`` draws under ``key``, shaped like it (for a sequence's draws made at once)."""
    check_draws(like)
    order = memory_order(like)
    with torch.autocast(like.device.type, enabled=False):
        slopes = _rrelu_slopes(to_flat(like, order), key, lower, upper)
    return from_flat(slopes, like.shape, order)


def rrelu_train(x: torch.Tensor, key: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    """RReLU training fast path; the element at memory position i draws from counter i under
    ``key`` (from :func:`draw_key`)."""
    check_draws(x)
    return _RReLU.apply(x, key, lower, upper)
