"""LISA as the paper intends: only sampled blocks change, optimizer state of exactly the active set."""

import json

import pytest
import torch

from lisa_bench.data.registry import load_conversations
from lisa_bench.data.tokenize import PadCollator, encode_all
from lisa_bench.memory.accounting import optimizer_state_bytes
from lisa_bench.methods import OptimConfig, build_method
from lisa_bench.models import load_model
from lisa_bench.training import train


def _setup(method_name="lisa", model_name="tiny-random-llama", seed=3, **options):
    loaded = load_model(model_name, seed=0)
    method = build_method(method_name, options, seed=seed)
    model = method.prepare_model(loaded.model)
    opt = method.build_optimizer(model, OptimConfig(lr=1e-2))
    convs = load_conversations("synthetic-instruct", size=64)
    examples = encode_all(convs, loaded.tokenizer, 96)
    batch = PadCollator(loaded.tokenizer.pad_token_id)(examples[:8])
    return model, method, opt, batch


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_only_active_blocks_change_and_state_matches_formula():
    model, method, opt, batch = _setup(gamma=2, interval=3)
    layout = method.layout
    outside = {n for n, _ in model.named_parameters() if n not in layout.block_of}
    for step in range(9):
        method.on_step_start(step, model, opt)
        active = set(method.active_blocks())
        assert len(active) == 2
        before = _snapshot(model)
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        for name, p in model.named_parameters():
            changed = not torch.equal(before[name], p.detach())
            if name in outside:
                if p.requires_grad and "norm" not in name:  # norms may get ~0 gradients, embeddings do not
                    assert changed, f"always-on {name} did not change at step {step}"
            elif layout.block_of[name] in active:
                assert changed, f"active block param {name} did not change at step {step}"
            else:
                assert not changed, f"frozen block param {name} changed at step {step}"
        expected = method.optimizer_state_bytes([p for p in model.parameters() if p.requires_grad])
        assert optimizer_state_bytes(opt) == expected
        # the moments alone are exactly 2 x 4 bytes x trainable parameters
        moments = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k != "step")
        assert moments == 8 * sum(p.numel() for p in model.parameters() if p.requires_grad)
        # no state or gradient is held for any frozen block
        frozen = [p for n, p in model.named_parameters() if n in layout.block_of and layout.block_of[n] not in active]
        assert all(p not in opt.state and p.grad is None for p in frozen)


def test_embedding_and_head_change_every_step(tiny_cfg, tmp_path):
    model, method, opt, batch = _setup(gamma=1, interval=2)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    for step in range(4):
        method.on_step_start(step, model, opt)
        e0, h0 = emb.detach().clone(), head.detach().clone()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        assert not torch.equal(e0, emb) and not torch.equal(h0, head)


def test_schedule_reproducible_and_switches_every_k(tiny_cfg, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = tiny_cfg("lisa", max_steps=12, seed=5, method_options={"gamma": 2, "interval": 4})
        train(cfg, tmp_path / name, progress=False)
        rows = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
        runs.append([r["active_layers"] for r in rows])
    assert runs[0] == runs[1]
    windows = [runs[0][i:i + 4] for i in range(0, 12, 4)]
    for w in windows:
        assert all(a == w[0] for a in w) and len(w[0]) == 2
    # the schedule comes from the method's own sampler alone: the method stepped without any training
    model, method, opt, _ = _setup(gamma=2, interval=4, seed=5)
    alone = []
    for step in range(12):
        method.on_step_start(step, model, opt)
        alone.append(method.active_blocks())
    assert alone == runs[0]
    # a different seed gives a different schedule
    other = tiny_cfg("lisa", max_steps=12, seed=6, method_options={"gamma": 2, "interval": 4})
    train(other, tmp_path / "c", progress=False)
    rows = [json.loads(x)["active_layers"] for x in (tmp_path / "c" / "train_log.jsonl").read_text().splitlines()]
    assert rows != runs[0]


def test_schedule_independent_of_data_order(tiny_cfg, tmp_path):
    """The layer sampler has its own generator: changing the data (its shuffling) leaves it alone."""
    a = tiny_cfg("lisa", seed=1, method_options={"gamma": 2, "interval": 3})
    b = tiny_cfg("lisa", seed=1, train_size=100, batch_size=4, method_options={"gamma": 2, "interval": 3})
    for cfg, name in ((a, "a"), (b, "b")):
        train(cfg, tmp_path / name, progress=False)
    la = [json.loads(x)["active_layers"] for x in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["active_layers"] for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert la == lb


def test_train_log_state_bytes_equal_formula(tiny_cfg, tmp_path):
    cfg = tiny_cfg("lisa", method_options={"gamma": 2, "interval": 4})
    metrics = train(cfg, tmp_path / "run", progress=False)
    model = load_model("tiny-random-llama").model
    per_block = sum(p.numel() for p in model.model.layers[0].parameters())
    outside = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("model.layers."))
    n_tensors_outside = sum(1 for n, _ in model.named_parameters() if not n.startswith("model.layers."))
    n_tensors_block = len(list(model.model.layers[0].parameters()))
    expected = 8 * (outside + 2 * per_block) + 4 * (n_tensors_outside + 2 * n_tensors_block)
    rows = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(r["optimizer_state_bytes"] == expected for r in rows)
    assert metrics["optimizer_state_bytes_peak"] == expected
    assert metrics["trainable_params_peak"] == outside + 2 * per_block


def test_tied_embeddings_counted_once():
    model, method, opt, batch = _setup(model_name="tiny-random-llama-tied", gamma=1, interval=5)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    method.on_step_start(0, model, opt)
    model(**batch).loss.backward()
    opt.step()
    always_on = opt.param_groups[0]["params"]
    assert sum(1 for p in always_on if p is model.get_input_embeddings().weight) == 1
    expected = method.optimizer_state_bytes([p for p in model.parameters() if p.requires_grad])
    assert optimizer_state_bytes(opt) == expected


def test_callback_form_keeps_state_of_every_visited_layer():
    model, method, opt, batch = _setup("lisa-callback", gamma=1, interval=1)
    sizes, visited = [], set()
    for step in range(12):
        method.on_step_start(step, model, opt)
        visited.update(method.active_blocks())
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sizes.append(optimizer_state_bytes(opt))
        block_states = {method.layout.block_of[n] for n, p in model.named_parameters()
                        if n in method.layout.block_of and p in opt.state}
        assert block_states == visited  # state of every block ever sampled, not only the active one
    assert len(visited) > 2 and sizes[-1] > sizes[0]
    assert sizes == sorted(sizes)


def test_lisa_state_stays_flat_where_callback_grows(tiny_cfg, tmp_path):
    peaks = {}
    for m in ("lisa", "lisa-callback"):
        cfg = tiny_cfg(m, max_steps=20, method_options={"gamma": 2, "interval": 2})
        train(cfg, tmp_path / m, progress=False)
        rows = [json.loads(x) for x in (tmp_path / m / "train_log.jsonl").read_text().splitlines()]
        peaks[m] = [r["optimizer_state_bytes"] for r in rows]
    assert len(set(peaks["lisa"])) == 1
    assert peaks["lisa-callback"][-1] > peaks["lisa"][-1]
    assert peaks["lisa-callback"][0] == peaks["lisa"][0]


def test_weighted_sampling_follows_weights():
    weights = [0, 0, 0, 1, 0, 0, 5, 0]
    model, method, opt, _ = _setup(gamma=2, interval=1, sampling="weighted", weights=weights)
    for step in range(5):
        method.on_step_start(step, model, opt)
        assert method.active_blocks() == [3, 6]


def test_weighted_sampling_defaults_to_block_norms():
    model, method, opt, _ = _setup(gamma=2, interval=1, sampling="weighted")
    probs = method.sampler.probs
    assert probs.shape == (8,) and torch.isclose(probs.sum(), torch.tensor(1.0))
    assert (probs > 0).all()


@pytest.mark.parametrize("gamma", [0, 8])
def test_gamma_bounds_inclusive(gamma):
    model, method, opt, batch = _setup(gamma=gamma, interval=2)
    method.on_step_start(0, model, opt)
    assert len(method.active_blocks()) == gamma


# ---- cover sampling: passes over the blocks, each block once before any twice ----------------------

def _draws(sampler, n):
    return [sampler.sample() for _ in range(n)]


@pytest.mark.parametrize("num_blocks,gamma", [(8, 2), (8, 4), (8, 8), (8, 1), (8, 3), (7, 2), (10, 4), (32, 5)])
def test_cover_trains_every_block_once_per_pass(num_blocks, gamma):
    from lisa_bench.methods.lisa import LayerSampler

    passes = 6
    sampler = LayerSampler(num_blocks, gamma, seed=11, cover=True)
    draws = _draws(sampler, passes * -(-num_blocks // gamma))
    assert all(len(d) == len(set(d)) == gamma for d in draws)  # gamma distinct blocks every interval
    whole, first_pass = num_blocks // gamma, -(-num_blocks // gamma)  # floor and ceil of N / gamma
    seen = [b for d in draws[:whole] for b in d]
    assert len(seen) == len(set(seen))  # no block repeats within the first floor(N / gamma) intervals
    assert set(b for d in draws[:first_pass] for b in d) == set(range(num_blocks))  # all N by ceil(N / gamma)
    if num_blocks % gamma == 0:  # exact passes: every block exactly once in each
        for p in range(passes):
            assert sorted(b for d in draws[p * whole:(p + 1) * whole] for b in d) == list(range(num_blocks))
    # after every interval the blocks' training counts differ by at most one: none trains twice before all once
    counts = [0] * num_blocks
    for d in draws:
        for b in d:
            counts[b] += 1
        assert max(counts) - min(counts) <= 1, (d, counts)


def test_uniform_sampling_does_not_cover():
    """The check above has teeth: uniform sampling (seeded) trains some block twice before another once."""
    from lisa_bench.methods.lisa import LayerSampler

    sampler = LayerSampler(8, 2, seed=11)
    counts = [0] * 8
    spread = []
    for d in _draws(sampler, 24):
        for b in d:
            counts[b] += 1
        spread.append(max(counts) - min(counts))
    assert max(spread) > 1


def test_cover_fills_a_short_pass_from_the_next():
    """N = 7, gamma = 3: pass 1 is intervals 1-2 and one block of interval 3, which fills up with 2 blocks of
    pass 2 (not the one just taken); pass 2 then runs on with its other 5 blocks (that one included)."""
    from lisa_bench.methods.lisa import LayerSampler

    sampler = LayerSampler(7, 3, seed=2, cover=True)
    a, b = sampler.sample(), sampler.sample()
    assert len(set(a + b)) == 6 and len(sampler.pending) == 1
    remainder = sampler.pending[0]
    c = sampler.sample()
    assert remainder in c and len(set(c)) == 3
    fill = set(c) - {remainder}
    assert len(sampler.pending) == 5 and set(sampler.pending) == set(range(7)) - fill  # the remainder's block included
    d = sampler.sample()
    rest = set(sampler.pending)  # pass 2's last 2 blocks
    assert fill | set(d) | rest == set(range(7)) and len(fill) + len(d) + len(rest) == 7
    e = sampler.sample()
    assert rest < set(e) and len(set(e)) == 3


def test_cover_deterministic_from_seed():
    from lisa_bench.methods.lisa import LayerSampler

    runs = [_draws(LayerSampler(8, 3, seed=s, cover=True), 12) for s in (4, 4, 5)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    # through the method, as every process builds it (seed = the run's seed)
    model, method, opt, _ = _setup(gamma=3, interval=2, sampling="cover", seed=4)
    alone = []
    for step in range(24):
        method.on_step_start(step, model, opt)
        alone.append(method.active_blocks())
    assert alone[::2] == runs[0]


def test_cover_state_dict_resumes_mid_pass():
    import io

    model, method, opt, _ = _setup(gamma=3, interval=1, sampling="cover", seed=7)
    method.on_step_start(0, model, opt)  # 5 of the 8 blocks left in this pass
    assert len(method.sampler.pending) == 5
    buf = io.BytesIO()
    torch.save(method.state_dict(), buf)  # as the checkpoint stores it
    expected = []
    for step in range(1, 12):
        method.on_step_start(step, model, opt)
        expected.append(method.active_blocks())
    model2, method2, opt2, _ = _setup(gamma=3, interval=1, sampling="cover", seed=99)  # the state, not the seed
    buf.seek(0)
    method2.load_state_dict(torch.load(buf, weights_only=False), model2, opt2)
    assert method2.sampler.pending == torch.load(io.BytesIO(buf.getvalue()), weights_only=False)["pending"]
    resumed = []
    for step in range(1, 12):
        method2.on_step_start(step, model2, opt2)
        resumed.append(method2.active_blocks())
    assert resumed == expected


def test_checkpoint_without_pass_state_still_loads_for_uniform():
    model, method, opt, _ = _setup(gamma=2, interval=1, seed=7)
    method.on_step_start(0, model, opt)
    state = method.state_dict()
    state.pop("pending")  # a checkpoint written before cover sampling existed
    expected = []
    for step in range(1, 6):
        method.on_step_start(step, model, opt)
        expected.append(method.active_blocks())
    model2, method2, opt2, _ = _setup(gamma=2, interval=1, seed=99)
    method2.load_state_dict(state, model2, opt2)
    resumed = []
    for step in range(1, 6):
        method2.on_step_start(step, model2, opt2)
        resumed.append(method2.active_blocks())
    assert resumed == expected


def test_cover_with_weights_refused():
    from lisa_bench.errors import BadInput
    from lisa_bench.methods import build_method

    with pytest.raises(BadInput) as err:
        build_method("lisa", {"sampling": "cover", "weights": [1.0] * 8})
    assert "'cover'" in str(err.value) and "valid choices" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BadInput, match="valid choices: uniform, weighted, cover"):
        build_method("lisa", {"sampling": "round-robin"})


def test_cover_experiment_differs_from_lisa_e_h_2l_only_in_sampling(tiny_cfg, tmp_path):
    from lisa_bench.config import read_experiment

    cover = read_experiment("experiments/lisa-e-h-2l-cover.yaml")
    plain = read_experiment("experiments/lisa-e-h-2l.yaml")
    assert cover["method_options"] == {**plain["method_options"], "sampling": "cover"}
    drop = lambda d: {k: v for k, v in d.items() if k not in ("description", "method_options")}  # noqa: E731
    assert drop(cover) == drop(plain)
    # through the training loop: 8 blocks, 2 per interval, so the first 4 intervals train each block once
    cfg = tiny_cfg("lisa", max_steps=8, seed=3, method_options={"gamma": 2, "interval": 2, "sampling": "cover"})
    train(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(x)["active_layers"] for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert sorted(b for r in rows[::2] for b in r) == list(range(8))
