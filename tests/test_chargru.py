"""CharGRU against torch.nn.GRU and a step-by-step char-rnn reference; sampling; the benchmark."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf, open_dict
from torch import nn

import activations
from activations import fused
from experiments import sample as sampling
from experiments.data import build_task
from experiments.inits import initialize
from experiments.models import build_model
from experiments.models.chargru import CharGRU

ROOT = Path(__file__).parents[1]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


pytestmark = pytest.mark.usefixtures("one_thread")


def unit(name: str, **params):
    return functools.partial(activations.build, name, **params)


def chargru(vocab: int, act=None, **options) -> CharGRU:
    return build_model(
        "chargru", act or unit("tanh"), num_outputs=vocab, in_channels=vocab, **options
    )


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= tol


# --- equivalence -----------------------------------------------------------------------------


class TorchGRULM(nn.Module):
    """one-hot -> torch.nn.GRU -> linear decoder: the reference for variant 'pytorch'."""

    def __init__(self, model: CharGRU) -> None:
        super().__init__()
        self.vocab = model.vocab_size
        self.gru = nn.GRU(model.vocab_size, model.hidden_size, model.num_layers)
        self.decoder = nn.Linear(model.hidden_size, model.vocab_size)
        with torch.no_grad():
            for k, layer in enumerate(model.layers):
                getattr(self.gru, f"weight_ih_l{k}").copy_(layer.ih.weight)
                getattr(self.gru, f"bias_ih_l{k}").copy_(layer.ih.bias)
                getattr(self.gru, f"weight_hh_l{k}").copy_(layer.hh.weight)
                getattr(self.gru, f"bias_hh_l{k}").copy_(layer.hh.bias)
            self.decoder.load_state_dict(model.decoder.state_dict())

    def forward(self, x, hidden):
        seq, hidden = self.gru(F.one_hot(x, self.vocab).to(self.decoder.weight.dtype), hidden)
        return self.decoder(seq), hidden


def run(model: nn.Module, x: torch.Tensor, h0: torch.Tensor, seed: int = 0):
    """Outputs, last hidden state and the gradients of a loss touching both."""
    h0 = h0.clone().requires_grad_()
    logits, last = model(x, h0)
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(logits.shape, generator=gen, dtype=torch.float64).to(logits.dtype)
    w2 = torch.randn(last.shape, generator=gen, dtype=torch.float64).to(last.dtype)
    ((logits * w1).sum() + (last * w2).sum()).backward()
    return logits, last, h0.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(("steps", "batch"), [(1, 1), (6, 3), (13, 5)])
def test_pytorch_variant_matches_torch_gru(dtype, layers, steps, batch) -> None:
    torch.manual_seed(layers * 100 + steps)
    model = chargru(9, hidden_size=7, num_layers=layers, variant="pytorch").to(dtype)
    reference = TorchGRULM(model).to(dtype)
    x = torch.randint(9, (steps, batch))
    h0 = torch.randn(layers, batch, 7, dtype=dtype)
    ours, theirs = run(model, x, h0), run(reference, x, h0)
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a, b, TOL[dtype])
    for k, layer in enumerate(model.layers):
        pairs = [
            (layer.ih.weight, f"weight_ih_l{k}"),
            (layer.ih.bias, f"bias_ih_l{k}"),
            (layer.hh.weight, f"weight_hh_l{k}"),
            (layer.hh.bias, f"bias_hh_l{k}"),
        ]
        for ours_p, name in pairs:
            assert_close(ours_p.grad, getattr(reference.gru, name).grad, TOL[dtype])
    assert_close(model.decoder.weight.grad, reference.decoder.weight.grad, TOL[dtype])


class StepByStep(nn.Module):
    """The cell equations written out per time step, sharing ``model``'s parameters.

    charrnn (Torch7 char-rnn model/GRU.lua): z, r = sigmoid(W x + b + U h + b'),
    n = act(W_n x + b_n + U_n (r * h) + b'_n), h' = z * n + (1 - z) * h.
    pytorch (torch.nn.GRU docs): n = act(W_n x + b_n + r * (U_n h + b'_n)), h' = (1-z) n + z h.
    """

    def __init__(self, model: CharGRU, variant: str) -> None:
        super().__init__()
        self.model, self.variant = model, variant

    @staticmethod
    def sequence_draws(act, shape, dtype):
        """The candidate unit at step t, f(v, t), with a random unit's draws made for the whole
        sequence when the layer starts, as documented: RReLU takes one key and step t's element
        (b, j) counter (t * B + b) * H + j; the noisy units draw N(0, 1) for all steps at once."""
        if not act.draws_random:
            return lambda v, t: act(v)
        if isinstance(act, activations.build("rrelu").__class__):
            key = fused.draw_key(torch.empty(0, dtype=dtype), act.generator)
            T, B, H = shape
            cells = torch.arange(T * B * H).view(T, B, H)
            a = act.lower + (act.upper - act.lower) * fused.uniform_cells(key, cells, dtype)
            return lambda v, t: torch.where(v >= 0, v, v / a[t])
        xi = torch.randn(shape, generator=act.generator, dtype=dtype)
        return lambda v, t: act(v, xi[t])

    def forward(self, x, hidden):
        m = self.model
        seq = F.one_hot(x, m.vocab_size).to(m.decoder.weight.dtype)
        last = []
        for k, layer in enumerate(m.layers):
            w_r, w_z, w_n = layer.ih.weight.chunk(3)
            b_r, b_z, b_n = layer.ih.bias.chunk(3)
            u_r, u_z, u_n = layer.hh.weight.chunk(3)
            c_r, c_z, c_n = layer.hh.bias.chunk(3)
            h, outs = hidden[k], []
            candidate = self.sequence_draws(layer.act, (len(seq), *h.shape), h.dtype)
            for t, xt in enumerate(seq):
                r = torch.sigmoid(xt @ w_r.T + b_r + h @ u_r.T + c_r)
                z = torch.sigmoid(xt @ w_z.T + b_z + h @ u_z.T + c_z)
                if self.variant == "charrnn":
                    n = candidate(xt @ w_n.T + b_n + (r * h) @ u_n.T + c_n, t)
                    h = z * n + (1 - z) * h
                else:
                    n = candidate(xt @ w_n.T + b_n + r * (h @ u_n.T + c_n), t)
                    h = (1 - z) * n + z * h
                outs.append(h)
            seq = torch.stack(outs)
            last.append(h)
        return m.decoder(seq), torch.stack(last)


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    return out


@pytest.mark.parametrize("variant", ["charrnn", "pytorch"])
@pytest.mark.parametrize(
    ("name", "params", "dtype"),
    [
        ("tanh", {}, torch.float32),
        ("tanh", {}, torch.float64),
        ("tlu", {"learnable": True, "alpha": 0.7}, torch.float64),
        ("elu", {}, torch.float64),
        ("mpelu", {}, torch.float64),  # two per-channel parameters through the batched recompute
        ("sigmoid", {}, torch.float64),
        # random units in training: the backward must replay the forward's draws
        ("rrelu", {}, torch.float64),
        ("rrelu", {"generator": 5}, torch.float64),  # from the unit's own generator
        ("noisy_relu", {}, torch.float64),
        ("noisy_hard_tanh", {"generator": 6}, torch.float64),
    ],
)
def test_matches_step_by_step_reference(variant, name, params, dtype) -> None:
    torch.manual_seed(3)
    params = dict(params)  # parametrize shares one dict between the variants
    seed = params.pop("generator", None)
    model = chargru(8, unit(name, **params), hidden_size=6, num_layers=2, variant=variant).to(dtype)
    if seed is not None:
        for layer in model.layers:
            layer.act.generator = torch.Generator().manual_seed(seed)
    if name == "tlu":  # distinct per-unit slopes, so a mix-up of channels would show
        with torch.no_grad():
            for layer in model.layers:
                layer.act.alpha.copy_(torch.linspace(0.3, 1.5, 6))
    x, h0 = torch.randint(8, (7, 3)), torch.randn(2, 3, 6, dtype=dtype)
    torch.manual_seed(11)
    ours = run(model, x, h0)
    ours_grads = grads(model)
    torch.manual_seed(11)
    if seed is not None:
        for layer in model.layers:
            layer.act.generator.manual_seed(seed)
    theirs = run(StepByStep(model, variant), x, h0)
    theirs_grads = grads(model)
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a, b, TOL[dtype])
    assert ours_grads.keys() == theirs_grads.keys()
    for key in ours_grads:
        assert_close(ours_grads[key], theirs_grads[key], TOL[dtype])
    if name == "tlu":
        assert ours_grads["layers.0.act.alpha"].abs().sum() > 0


def test_bf16_autocast_keeps_the_recurrence_in_float32() -> None:
    torch.manual_seed(0)
    model = chargru(7, hidden_size=6, num_layers=2)
    x = torch.randint(7, (5, 3))
    exact, _ = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, hidden = model(x)
    assert hidden.dtype == torch.float32
    logits.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    assert_close(logits.float(), exact, 0.05)


def test_parameter_count_equals_char_rnn() -> None:
    """docs/papers.md §6: 200,292 = 88,320 + 99,072 + 12,900 for V=100, 128 x 2."""
    model = chargru(100, hidden_size=128, num_layers=2, variant="charrnn")
    assert sum(p.numel() for p in model.parameters()) == 200_292


def test_weight_layers_and_their_hooks() -> None:
    model = chargru(5, hidden_size=4, num_layers=2)
    pairs = model.weight_layers()
    expected = [
        (model.layers[0].ih, model.layers[0].act),
        (model.layers[0].hh, model.layers[0].act),
        (model.layers[1].ih, model.layers[1].act),
        (model.layers[1].hh, model.layers[1].act),
        (model.decoder, None),
    ]
    assert [(id(a), id(b)) for a, b in pairs] == [(id(a), id(b)) for a, b in expected]
    seen: dict[int, tuple] = {}

    def record(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        seen[id(module)] = (inputs, out)

    for layer, _ in pairs:
        layer.register_forward_hook(record)
    x, h0 = torch.randint(5, (6, 2)), torch.randn(2, 2, 4)
    with torch.no_grad():
        first = model.layers[0](F.one_hot(x, 5).float(), h0[0])[0]
    seen.clear()
    model(x, h0)
    hh = model.layers[0].hh
    inputs, out = seen[id(hh)]
    hprev = torch.cat([h0[:1], first[:-1]])
    assert torch.allclose(inputs[0], hprev)
    assert torch.allclose(out, hprev @ hh.weight.T + hh.bias, atol=1e-6)


def test_lsuv_init_reaches_every_weight_layer() -> None:
    """Every weight layer (both layers' input and recurrent projections, the decoder) is
    re-initialised, and its output variance on the probe, pooled over the time steps and
    measured here by hooks of the test's own, ends within tol of 1."""
    torch.manual_seed(0)
    model = chargru(6, hidden_size=8, num_layers=2)
    probe = torch.randint(6, (10, 4))
    layers = [layer for layer, _ in model.weight_layers()]
    before = [layer.weight.detach().clone() for layer in layers]
    initialize(model, "lsuv", batches=lambda i: probe, tol=0.1, max_iter=20)
    outputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(layers))}
    for index, layer in enumerate(layers):
        layer.register_forward_hook(lambda m, i, out, index=index: outputs[index].append(out))
    with torch.no_grad():
        model(probe)  # train mode, as LSUV measured (no dropout in this net)
    assert len(layers) == 5
    for index, layer in enumerate(layers):
        assert not torch.equal(layer.weight, before[index]), f"layer {index} kept its weights"
        pooled = torch.cat([o.reshape(-1) for o in outputs[index]])
        assert abs(pooled.var(correction=0).item() - 1.0) < 0.1, index


@pytest.mark.parametrize("num_layers", [1, 2])
def test_dropout_between_layers_and_before_the_decoder_only_in_training(num_layers) -> None:
    """char-rnn drops a layer's output before the next layer and before the decoder, never
    inside the recurrence: so the first layer's final state is untouched even in training."""
    torch.manual_seed(0)
    plain = chargru(6, hidden_size=8, num_layers=num_layers)
    dropped = chargru(6, hidden_size=8, num_layers=num_layers, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    x = torch.randint(6, (5, 3))
    logits, hidden = dropped(x)
    plain_logits, plain_hidden = plain(x)
    assert not torch.allclose(logits, plain_logits)
    assert torch.equal(hidden[0], plain_hidden[0])
    if num_layers > 1:
        assert not torch.allclose(hidden[1:], plain_hidden[1:])
    dropped.eval()
    assert torch.equal(dropped(x)[0], plain(x)[0])


def test_embedding_option() -> None:
    model = chargru(6, hidden_size=8, num_layers=1, embedding="embed", embed_dim=3)
    assert model.layers[0].ih.in_features == 3
    logits, hidden = model(torch.randint(6, (4, 2)))
    logits.sum().backward()
    assert logits.shape == (4, 2, 6) and hidden.shape == (1, 2, 8)
    assert model.encoder.weight.grad is not None


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"variant": "lstm"}, "model.variant='lstm' is unknown; choose from"),
        ({"embedding": "bytes"}, "model.embedding='bytes' is unknown"),
        ({"hidden_size": 0}, "model.hidden_size=0"),
        ({"dropout": 1.0}, "model.dropout=1.0"),
        ({"width": 3}, "has no option 'width'"),
    ],
)
def test_bad_options_fail_in_one_line(options, match) -> None:
    with pytest.raises(ValueError, match=match) as err:
        chargru(5, **options)
    assert "\n" not in str(err.value)


def test_channel_changing_unit_is_rejected() -> None:
    with pytest.raises(ValueError, match="changes the channel count"):
        chargru(5, unit("crelu"), hidden_size=4)


# --- training with the text task ---------------------------------------------------------------


def text_source(root: Path, size: int = 3000) -> Path:
    gen = torch.Generator().manual_seed(1)
    words = [b"int ", b"x", b" = ", b"0;\n", b"return ", b"struct ", b"{", b"}\n", b"/* a */"]
    picks = torch.randint(len(words), (size // 3,), generator=gen).tolist()
    root.mkdir(parents=True, exist_ok=True)
    (root / "code.c").write_bytes(b"".join(words[i] for i in picks)[:size])
    return root


def small_task(tmp_path: Path):
    dataset = {"source": str(text_source(tmp_path / "src")), "batch_size": 4, "seq_len": 8}
    task = build_task(
        "linux",
        device=torch.device("cpu"),
        seed=0,
        data_dir=tmp_path / "data",
        eval_batch_size=4,
        **dataset,
    )
    return task, dataset


def train(model, task, opt, steps: range) -> list[float]:
    losses = []
    for step in steps:
        loss = task.training_loss(model, task.train_batch(step), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_resume_continues_exactly(tmp_path: Path) -> None:
    task, _ = small_task(tmp_path)
    spe = task.steps_per_epoch
    steps = range(spe + 3)  # crosses an epoch start, where the state resets

    def fresh():
        torch.manual_seed(0)
        model = chargru(task.num_outputs, unit("tlu", learnable=True), hidden_size=8)
        return model, torch.optim.RMSprop(model.parameters(), lr=2e-3, alpha=0.95)

    model, opt = fresh()
    straight = train(model, task, opt, steps)
    first, opt = fresh()
    cut = spe - 2
    train(first, task, opt, steps[:cut])
    saved = {k: v for k, v in task.state_dict().items()}
    saved_model, saved_opt = first.state_dict(), opt.state_dict()
    resumed_task, _ = small_task(tmp_path)
    resumed_task.load_state_dict(saved)
    second, opt2 = fresh()
    second.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    assert train(second, resumed_task, opt2, steps[cut:]) == straight[cut:]
    for a, b in zip(model.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_training_lowers_validation_bpc(tmp_path: Path) -> None:
    task, _ = small_task(tmp_path)
    torch.manual_seed(0)
    model = chargru(task.num_outputs, hidden_size=16, variant="charrnn")
    before = task.evaluate(model, "val")["bpc"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(model, task, opt, range(3 * task.steps_per_epoch))
    after = task.evaluate(model, "val")["bpc"]
    assert after < before - 1.0
    assert before == pytest.approx(math.log2(task.num_outputs), abs=0.3)


# --- sampling -------------------------------------------------------------------------------


def test_sample_is_seeded_and_never_draws_unknown(tmp_path: Path) -> None:
    task, _ = small_task(tmp_path)
    torch.manual_seed(0)
    model = chargru(task.num_outputs, hidden_size=8).train()
    with torch.no_grad():
        model.decoder.bias[task.vocab.unk] = 50.0  # the unknown symbol would win every draw
    state = torch.get_rng_state()
    text = sampling.sample(model, task.vocab, num_chars=40, temperature=0.8, prime="int", seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # global generator untouched
    assert model.training
    assert text.startswith("int") and len(text) == 43 and "\ufffd" not in text
    assert text == sampling.sample(model, task.vocab, num_chars=40, prime="int", seed=3)
    assert text != sampling.sample(model, task.vocab, num_chars=40, prime="int", seed=4)
    with pytest.raises(ValueError, match="temperature"):
        sampling.sample(model, task.vocab, temperature=0)


def test_sample_command_reads_a_run_directory(tmp_path: Path, capsys) -> None:
    task, dataset = small_task(tmp_path)
    model = chargru(task.num_outputs, unit("tlu", alpha=0.5), hidden_size=8, variant="charrnn")
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    cfg = {
        "seed": 1,
        "activation": {"name": "tlu", "alpha": 0.5},
        "model": {"name": "chargru", "hidden_size": 8, "variant": "charrnn"},
        "dataset": {"name": "linux", "eval_batch_size": 4, **dataset},
        "paths": {"data_dir": str(tmp_path / "data"), "results_dir": str(tmp_path)},
    }
    OmegaConf.save(OmegaConf.create(cfg), run_dir / ".hydra" / "config.yaml")
    torch.save({"model": model.state_dict(), "step": 0}, run_dir / "checkpoints" / "last.pt")
    sampling.main([str(run_dir), "--chars", "30", "--seed", "2", "--prime", "x"])
    printed = capsys.readouterr().out
    assert printed == sampling.sample(model, task.vocab, num_chars=30, prime="x", seed=2) + "\n"
    with pytest.raises(SystemExit, match="is not a finished run directory"):
        sampling.main([str(tmp_path / "nowhere")])


# --- benchmark script -----------------------------------------------------------------------


def test_bench_gru_smoke(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_gru", ROOT / "scripts" / "bench_gru.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--smoke"])
    assert set(results[8]) == {"nn.GRU", "pytorch", "charrnn"}
    assert all(rate > 0 for rate in results[8].values())
    assert "| hidden | nn.GRU chars/s |" in capsys.readouterr().out


# --- configs --------------------------------------------------------------------------------


def test_model_yaml_lists_every_option_with_the_code_default() -> None:
    from experiments.models import MODELS

    config = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "model" / "chargru.yaml"))
    assert config.pop("name") == "chargru"
    assert config == MODELS.defaults("chargru")


def test_preset_composes_with_char_rnn_settings() -> None:
    from hydra import compose, initialize_config_dir

    from experiments.config import validate
    from experiments.train import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=["experiment=gru_linux_tlu"], return_hydra_config=True)
    sweep = cfg.hydra.sweeper.params
    assert sweep.activation == "tanh,sigmoid,lrelu,elu,tlu" and sweep.seed == "1,2"
    with open_dict(cfg):
        del cfg["hydra"]
    validate(cfg)
    assert (cfg.activation.name, cfg.model.variant, cfg.init.name, cfg.init.a) == (
        "tanh",
        "charrnn",
        "uniform",
        0.08,
    )
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.alpha) == ("rmsprop", 2e-3, 0.95)
    assert (cfg.schedule.gamma, cfg.schedule.unit, cfg.schedule.start) == (0.97, "epochs", 10)
    assert cfg.trainer.grad_clip_value == 5 / cfg.dataset.seq_len


def test_preset_trains_end_to_end_and_samples(cli, tmp_path: Path, capsys) -> None:
    """The CLI with the study preset on a toy corpus: bpc in the summary, then the sampler."""
    source = text_source(tmp_path / "src", 4000)
    result = cli(
        "experiment=gru_linux_tlu",
        "activation=tlu",
        "seed=1",
        f"dataset.source={source}",
        "dataset.batch_size=4",
        "dataset.seq_len=8",
        "dataset.eval_batch_size=4",
        "model.hidden_size=8",
        "trainer.max_steps=6",
        "trainer.eval_every=3",
        "trainer.threads=1",
        tiny=False,
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "results" / "gru_linux_tlu" / "tlu-chargru-linux-s1"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["metric"] == "bpc"
    assert summary["data"]["source"] == str(source.resolve())
    assert summary["test"]["bpc"] == pytest.approx(summary["test"]["loss"] / math.log(2))
    sampling.main([str(run_dir), "--chars", "20", "--data-dir", str(tmp_path / "data")])
    assert len(capsys.readouterr().out) >= 21
