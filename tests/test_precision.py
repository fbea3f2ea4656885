"""Precision recipes: pure bf16 drops small updates, bf16-master, bf16-kahan and bf16-sr keep them; masters live in the
optimizer's state (LISA's switch frees them), the state bytes are the memory model's, a run resumes exactly,
and what a recipe cannot serve is refused."""

import json

import pytest
import torch

from lisa_bench.config import TrainConfig
from lisa_bench.errors import BadInput
from lisa_bench.methods import METHODS, OptimConfig, build_method, load_all
from lisa_bench.precision import PRECISIONS, prepare_optimizer, resolve_precision, state_bytes
from lisa_bench.training import train

load_all()


def _steps(precision: str, steps=50, lr=2e-5, seed=0) -> torch.Tensor:
    """A 256 x 256 weight of scale 0.02 after AdamW steps on gradients of scale 0.01 under a recipe."""
    prec = resolve_precision(precision)
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(256, 256, generator=gen) * 0.02
    grads = [torch.randn(256, 256, generator=gen) * 0.01 for _ in range(steps)]
    p = torch.nn.Parameter(w0.to(prec.weights, copy=True))
    opt = prepare_optimizer(prec, build_method("full", None), OptimConfig(
        lr=lr, kahan=prec.kahan, rounding_seed=seed if prec.stochastic else None).adamw([p]))
    for g in grads:
        p.grad = g.to(p.dtype)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return p.detach().double() - w0.to(prec.weights).double()


def test_sound_recipes_keep_the_update_pure_bf16_loses_it():
    reference = _steps("fp32")
    kept = {name: float((_steps(name) * reference).sum() / (reference * reference).sum())
            for name in ("bf16", "bf16-master", "bf16-kahan", "bf16-sr")}
    assert kept["bf16"] < 0.3  # most steps are below half a weight's spacing
    assert kept["bf16-master"] > 0.95 and kept["bf16-kahan"] > 0.8, kept
    assert kept["bf16-sr"] > 0.95, kept  # in expectation: the draws' noise averages out over 65536 elements
    print({k: round(v, 4) for k, v in kept.items()})


def test_stochastic_rounding_in_chunks_keeps_the_update_and_its_temporaries(monkeypatch):
    """bf16-sr steps a large parameter in chunks (fp32 temporaries of one chunk, not of the whole tensor), each
    chunk with its own draws: the update is kept the same way, and the memory model counts one chunk."""
    import lisa_bench.precision as precision

    reference = _steps("fp32")
    monkeypatch.setattr(precision, "SR_CHUNK", 1000)  # 66 chunks of the 256 x 256 weight
    chunked = _steps("bf16-sr")
    assert float((chunked * reference).sum() / (reference * reference).sum()) > 0.95
    p = torch.empty(256, 256, dtype=torch.bfloat16)
    assert precision.step_temporary_bytes(resolve_precision("bf16-sr"), build_method("full", None), [p], "cpu") \
        == 20 * 1000


def _random_steps(model, method, optimizer, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        method.on_step_start(step, model, optimizer)
        for p in model.parameters():
            if p.requires_grad:
                p.grad = (torch.randn(p.shape, generator=gen) * 0.01).to(p.dtype)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        yield step


@pytest.mark.parametrize("precision", ["bf16-master", "bf16-kahan"])
def test_lisa_switch_frees_masters_and_buffers_and_the_state_is_the_formula(precision):
    from lisa_bench.models import load_model

    prec = resolve_precision(precision)
    model = load_model("tiny-random-llama", dtype="bf16").model
    method = build_method("lisa", {"gamma": 2, "interval": 2}, seed=0)
    model = method.prepare_model(model)
    optimizer = prepare_optimizer(prec, method, method.build_optimizer(model, OptimConfig(lr=1e-3, kahan=prec.kahan)))
    seen = set()
    for step in _random_steps(model, method, optimizer, 8):
        trainable = [p for p in model.parameters() if p.requires_grad]
        held = list(optimizer.state)
        assert {id(p) for p in held} == {id(p) for p in trainable}  # nothing of the blocks switched away from
        extra = "master" if prec.masters else "kahan_comp"
        assert all(optimizer.state[p][extra].dtype == (torch.float32 if prec.masters else torch.bfloat16)
                   for p in held)
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
        assert method.optimizer_bytes(optimizer) == state_bytes(prec, method, held)
        seen.add(tuple(method.active_blocks()))
    assert len(seen) > 1  # it switched


def test_stochastic_rounding_lands_on_the_two_neighbours_without_bias():
    from lisa_bench.precision import stochastic_round_

    exact = torch.full((200_000,), 1.0 + 0.3 * 2**-7)  # 0.3 of the way from 1 to the next bf16 value, 1 + 2^-7
    w = torch.empty(exact.shape, dtype=torch.bfloat16)
    stochastic_round_(w, exact, seed=0)
    assert set(w.float().unique().tolist()) == {1.0, 1.0 + 2**-7}
    assert float(w.double().mean()) == pytest.approx(float(exact[0]), abs=3 * 2**-7 * 0.46 / 200_000**0.5)
    negative = torch.empty_like(w)
    stochastic_round_(negative, -exact, seed=0)  # the same on the magnitude for either sign
    assert torch.equal(negative, -w)
    again = torch.empty_like(w)
    stochastic_round_(again, exact, seed=0)
    assert torch.equal(again, w)  # the same draws from the same seed (every DDP replica alike)


@pytest.mark.parametrize("kind", ["master", "kahan_comp"])
def test_lisa_switch_keeps_the_sub_spacing_progress_in_expectation(kind):
    """A block leaving LISA's sampled set takes its exact value (fp32 master, or weight plus Kahan buffer) into
    its bf16 weight by stochastic rounding; nearest rounding (the weight as it stood) drops the progress below
    half its spacing."""
    from lisa_bench.methods.base import drop_state

    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(512, 512, generator=gen) * 0.02).to(torch.bfloat16)
    spacing = torch.ldexp(torch.ones(w.shape), torch.frexp(w.float())[1] - 8)  # bf16 spacing around each weight
    progress = 0.25 * spacing * torch.sign(torch.randn(w.shape, generator=gen))  # a quarter spacing, either way
    exact = w.float() + progress
    state = {"master": exact.clone()} if kind == "master" else {"kahan_comp": progress.to(torch.bfloat16)}
    kept = {}
    for name, seed in (("nearest", None), ("stochastic", 7)):
        p = torch.nn.Parameter(w.clone(), requires_grad=False)
        opt = torch.optim.AdamW([p])
        opt.state[p] = dict(state)
        drop_state(opt, opt.param_groups[0], seed)
        assert p not in opt.state
        moved = p.detach().float() - w.float()
        kept[name] = float((moved * progress).sum() / (progress * progress).sum())
    assert kept["nearest"] == 0.0
    assert kept["stochastic"] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("precision", ["bf16-master", "bf16-kahan", "bf16-sr"])
@pytest.mark.parametrize("method", sorted(m for m, cls in METHODS.items() if cls.trains))
def test_every_method_under_the_sound_recipes(method, precision, tiny_cfg, tmp_path):
    """Trains, or is refused with its reason; bf16 weights throughout; the state bytes are the memory model's."""
    from lisa_bench.memory.model import predict
    from lisa_bench.models import model_config

    cfg = tiny_cfg(method, max_steps=3, precision=precision, **METHODS[method].quick_test)
    if precision in ("bf16-kahan", "bf16-sr") and METHODS[method].own_optimizer:
        with pytest.raises(BadInput, match=f"cannot serve method '{method}': it builds"):
            train(cfg, tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()
        return
    metrics = train(cfg, tmp_path / "run", progress=False)
    assert metrics["precision"] == precision and metrics["train_loss_last"] < metrics["train_loss_first"]
    pred = predict(model_config("tiny-random-llama"), method, cfg.method_options, 8, 96, precision, 3)
    if method != "lisa-callback":  # its state follows the blocks visited, not the first steps
        assert metrics["optimizer_state_bytes_peak"] == pred.optimizer_bytes


def test_masters_state_is_fp32_moments_plus_the_master(tiny_cfg, tmp_path):
    n_tensors = len(list(__import__("lisa_bench.models", fromlist=["x"]).load_model("tiny-random-llama").model.parameters()))
    master = train(tiny_cfg("full", max_steps=2, precision="bf16-master"), tmp_path / "m", progress=False)
    kahan = train(tiny_cfg("full", max_steps=2, precision="bf16-kahan"), tmp_path / "k", progress=False)
    sr = train(tiny_cfg("full", max_steps=2, precision="bf16-sr"), tmp_path / "s", progress=False)
    pure = train(tiny_cfg("full", max_steps=2, precision="bf16"), tmp_path / "b", progress=False)
    n = master["total_params"]
    assert master["optimizer_state_bytes_peak"] == 12 * n + 4 * n_tensors  # fp32 m, v and master; a step counter each
    assert kahan["optimizer_state_bytes_peak"] == 6 * n  # bf16 m, v and compensation; optimi counts steps per group
    # bf16-sr: pure bf16's state to the byte (bf16 m and v, a step counter each), counted from the state tensors
    assert sr["optimizer_state_bytes_peak"] == pure["optimizer_state_bytes_peak"] == 4 * n + 4 * n_tensors


@pytest.mark.parametrize("precision", ["bf16-master", "bf16-kahan", "bf16-sr"])
def test_resumed_run_is_the_uninterrupted_one(precision, tiny_cfg, tmp_path):
    """Masters and Kahan buffers are in the checkpoint, and bf16-sr's draws follow from its seed and step count: a
    run stopped at step 7 resumes from step 4 exactly."""
    from tests.training import interrupted_at_step

    cfg = tiny_cfg("lisa", max_steps=9, checkpoint_every=4, precision=precision, lr=1e-3,
                   method_options={"gamma": 2, "interval": 3})
    train(cfg, tmp_path / "whole", progress=False)
    with interrupted_at_step(7):
        train(cfg, tmp_path / "cut", progress=False)
    metrics = train(cfg, tmp_path / "cut", progress=False)
    assert metrics["resumed_from_step"] == 4

    def log(run):
        return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]

    assert [r["loss"] for r in log(tmp_path / "cut")] == [r["loss"] for r in log(tmp_path / "whole")]
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "cut" / "model" / "model.safetensors"), load_file(tmp_path / "whole" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lost_updates_are_logged_and_pure_bf16_warns_once(tiny_cfg, tmp_path, capsys):
    lossy = train(tiny_cfg("full", max_steps=4, eval_every=2, precision="bf16", lr=2e-5), tmp_path / "b", progress=False)
    err = capsys.readouterr().err
    assert err.count("lost") == 1 and "bf16-master" in err and "lr 2e-05" in err
    assert lossy["lost_update_share_first"] > 0.5
    rows = [json.loads(x) for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "lost_update_share" in r] == [0, 1, 3]  # the first step, every held-out point
    sound = train(tiny_cfg("full", max_steps=4, precision="bf16-master", lr=2e-5), tmp_path / "m", progress=False)
    assert "lost" not in capsys.readouterr().err
    assert abs(sound["lost_update_share_first"]) < 0.01 and abs(sound["lost_update_share_last"]) < 0.01
    # bf16-sr keeps the update in expectation: no warning, and its sampled share well below pure bf16's (not 0: one
    # step's estimate on the sample scatters with the rounding draws)
    rounded = train(tiny_cfg("full", max_steps=4, precision="bf16-sr", lr=2e-5), tmp_path / "s", progress=False)
    assert "lost" not in capsys.readouterr().err
    assert rounded["lost_update_share_first"] < lossy["lost_update_share_first"] - 0.2


def test_kahan_without_torch_optimi_is_refused(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optimi", None)  # an import of it fails
    with pytest.raises(BadInput, match="needs the torch-optimi package"):
        TrainConfig(method="full", max_steps=2, precision="bf16-kahan").build_method()


@pytest.mark.parametrize("args, needle", [
    (["--precision", "fp8"], "unknown precision 'fp8'; valid choices: fp32, bf16, bf16-mixed, bf16-master, bf16-kahan, "
                             "bf16-sr"),
    (["--method", "galore", "--precision", "bf16-kahan"], "cannot serve method 'galore'"),
    (["--method", "badam", "--precision", "bf16-sr"], "cannot serve method 'badam': it builds"),
    (["--method", "lisa", "--precision", "bf16-master", "--option", "switch_rounding=up"],
     "unknown lisa switch_rounding 'up'; valid choices: stochastic, nearest"),
])
def test_bad_precision_on_the_command_line(args, needle, tmp_path, capsys):
    from lisa_bench.cli import main

    base = ["train", "--method", "full", "--model", "tiny-random-llama", "--max-steps", "2", "--device", "cpu",
            "--output-dir", str(tmp_path / "out")]
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))



def test_memory_command_refuses_a_recipe_that_cannot_serve_a_method(tmp_path, capsys):
    from lisa_bench.cli import main

    argv = ["memory", "--models", "tiny-random-llama", "--steps", "1", "--dtype", "bf16-kahan", "--methods",
            "full,galore-r128", "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--methods galore-r128: precision 'bf16-kahan' cannot serve method 'galore'" in err[0]
    assert not (tmp_path / "out").exists()


def test_stochastic_rounding_adamw_steps_an_fp32_parameter_as_torch_adamw():
    """bf16-sr's optimizer updates a parameter that is not bf16 (LoRA's fp32 adapters) exactly as torch's AdamW,
    state included: its fp32 moments are the tensors themselves, and a denominator computed in place overwrote the
    second moment (LoRA r128 under bf16-sr then hardly trained: held-out loss 2.25 against pure bf16's 1.04)."""
    from lisa_bench.precision import StochasticRoundingAdamW

    torch.manual_seed(0)
    ours, ref = torch.nn.Parameter(torch.randn(64, 64)), torch.nn.Parameter(torch.zeros(64, 64))
    ref.data.copy_(ours.data)
    opt = StochasticRoundingAdamW([ours], seed=0, lr=1e-2, weight_decay=0.01)
    torch_opt = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.01, foreach=False)
    for _ in range(5):
        grad = torch.randn(64, 64)
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        torch_opt.step()
    torch.testing.assert_close(ours.data, ref.data, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(opt.state[ours]["exp_avg_sq"], torch_opt.state[ref]["exp_avg_sq"])
