"""The training loop's fast paths give the plain loop's numbers: loss, gradients, training."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from workbench import data
from workbench.errors import WorkbenchError
from workbench.models import tiny_llama
from workbench.train import TrainConfig, causal_lm_loss, compile_mode, linear_cross_entropy, train

REPO = Path(__file__).resolve().parent.parent

VOCAB = 128


def llama(seed: int = 0, n_layers: int = 2):
    return tiny_llama(n_layers=n_layers, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=VOCAB, seed=seed)[0]


def stream(seed: int = 0, batch_size: int = 8, block_len: int = 33):
    tokens = torch.arange(4000) % 61 * 2 % VOCAB  # a learnable periodic text
    return data.batches(tokens, batch_size, block_len, seed=seed)


@pytest.mark.parametrize("chunk", [7, 50, 10_000])
def test_linear_cross_entropy_equals_full_logits_with_gradients(chunk):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(50, 16, generator=generator, requires_grad=True)
    weight = torch.randn(300, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 300, (50,), generator=generator)
    targets[[3, 9]] = -100  # ignored positions
    expected = F.cross_entropy(hidden @ weight.T, targets)
    expected_grads = torch.autograd.grad(3 * expected, (hidden, weight))
    loss = linear_cross_entropy(hidden, weight, targets, chunk_tokens=chunk)
    grads = torch.autograd.grad(3 * loss, (hidden, weight))
    assert torch.allclose(loss, expected, atol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(linear_cross_entropy(hidden, weight, targets, chunk_tokens=chunk), expected, atol=1e-5)


def test_linear_cross_entropy_skips_gradient_work_under_no_grad(monkeypatch):
    import workbench.train as train_module

    asked = []
    kernel = train_module._softmax_cross_entropy
    monkeypatch.setattr(train_module, "_softmax_cross_entropy", lambda *args: asked.append(args[-1]) or kernel(*args))
    hidden, weight = torch.randn(20, 8, requires_grad=True), torch.randn(50, 8, requires_grad=True)
    targets = torch.randint(0, 50, (20,))
    with torch.no_grad():  # evaluation: the loss alone
        loss = linear_cross_entropy(hidden, weight, targets, chunk_tokens=8)
    assert asked == [False] * 3 and torch.allclose(loss, F.cross_entropy(hidden @ weight.T, targets), atol=1e-5)
    linear_cross_entropy(hidden, weight, targets, chunk_tokens=8)
    assert asked[3:] == [True] * 3


def test_causal_lm_loss_never_builds_the_logits_and_matches_them():
    model, batch = llama(), next(stream())
    logits_loss = F.cross_entropy(model(input_ids=batch[:, :-1]).logits.flatten(0, 1), batch[:, 1:].flatten())
    want = torch.autograd.grad(logits_loss, model.model.embed_tokens.weight)[0]
    calls = []
    handle = model.lm_head.register_forward_hook(lambda *args: calls.append(1))
    loss = causal_lm_loss(model, batch)
    handle.remove()
    got = torch.autograd.grad(loss, model.model.embed_tokens.weight)[0]  # tied: head and embedding gradients
    assert not calls  # the fast path used the head's weight, never its [B, T, V] forward
    assert torch.allclose(loss, logits_loss, atol=1e-5) and torch.allclose(got, want, atol=1e-5)


@pytest.mark.slow
def test_training_lowers_the_loss_and_logs_every_window(store):
    model = llama()
    with store.start_run("test", "train") as run:
        metrics = train(
            model,
            stream(),
            TrainConfig(steps=40, lr=1e-2, warmup_steps=4, log_every=10, checkpoint=False),
            run=run,
            progress=False,
        )
    history = store.history(run.id)
    assert list(history["step"]) == [10, 20, 30, 40]
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    assert metrics["tokens_per_s"] > 0 and not model.training


def test_an_arm_leaves_one_summary_line_not_a_bar(store, capsys):
    with store.start_run("test", "train") as run:
        train(llama(), stream(batch_size=2), TrainConfig(steps=3, log_every=1, checkpoint=False), run=run)
    out, err = capsys.readouterr()
    assert out.splitlines() == [out.strip()] and out.startswith(f"trained run #{run.id}: 3 steps in ")
    assert "train_loss" in out and "lr" not in out.split(";")[1]


@pytest.mark.slow
def test_compiled_step_trains_like_eager_and_leaves_the_model_eager(store):
    losses = {}
    for compile in (False, True):
        model = llama(n_layers=2)
        config = TrainConfig(steps=2, lr=1e-2, warmup_steps=1, log_every=2, checkpoint=False, compile=compile)
        with store.start_run("test", f"compile={compile}") as run:
            losses[compile] = train(model, stream(batch_size=2, block_len=17), config, run=run, progress=False)[
                "train_loss"
            ]
        assert store.run(run.id)["summary"]["compiled"] is compile
        assert all(module._compiled_call_impl is None for module in model.modules())  # only the step was compiled
    assert losses[True] == pytest.approx(losses[False], abs=1e-4)


def test_attention_gets_no_mask_so_sdpa_can_pick_flash(monkeypatch):
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append((kwargs.get("attn_mask"), kwargs.get("is_causal")))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    causal_lm_loss(llama(), next(stream()))
    assert seen == [(None, True)] * 2  # a mask would rule the flash kernel out


@pytest.mark.slow
def test_compiled_step_is_one_graph_with_unmasked_causal_attention():
    graphs = []

    def capture(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch.compile(causal_lm_loss, backend=capture)(llama(), next(stream()))
    assert len(graphs) == 1  # no graph breaks: forward and loss fuse as one
    attention = [node for node in graphs[0].graph.nodes if node.target is F.scaled_dot_product_attention]
    assert [(node.kwargs["attn_mask"], node.kwargs["is_causal"]) for node in attention] == [(None, True)] * 2


def test_cuda_graphs_only_where_each_backward_is_consumed_before_the_next_forward():
    assert compile_mode(TrainConfig(), world_size=1) == "reduce-overhead"
    assert (
        compile_mode(TrainConfig(grad_accum=2), world_size=1) == "default"
    )  # a replay would overwrite the first micro-step's grads
    assert compile_mode(TrainConfig(), world_size=2) == "default"
    assert compile_mode(TrainConfig(compile_mode="max-autotune"), world_size=2) == "max-autotune"
    with pytest.raises(WorkbenchError, match="unknown compile_mode 'fast'"):
        TrainConfig(compile_mode="fast")


def test_fsdp_is_refused_in_one_line():
    with pytest.raises(WorkbenchError, match="FSDP is not supported by the workbench loop; use DDP"):
        TrainConfig(strategy="fsdp")
    with pytest.raises(WorkbenchError, match="unknown strategy"):
        TrainConfig(strategy="zero3")


def test_rank_shards_of_a_batch_are_the_global_batch():
    tokens = torch.arange(10_000)
    whole = next(data.batches(tokens, 6, 17, seed=3))
    shards = [next(data.batches(tokens, 3, 17, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert torch.equal(torch.cat(shards), whole)
    with pytest.raises(WorkbenchError):
        next(data.batches(tokens, 3, 17, rank=2, world_size=2))


@pytest.mark.slow
def test_speed_benchmark_runs_side_by_side_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path))
    spec = importlib.util.spec_from_file_location("train_speed", REPO / "benchmarks" / "train_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (result,) = bench.main(["--smoke", "--steps", "8", "--segment", "4"])
    assert set(result["arms"]) == {"plain", "workbench"} and result["arms"]["workbench"]["timed_steps"] == 4
    arms = result["arms"]
    assert result["speedup"] == pytest.approx(arms["workbench"]["tokens_per_s"] / arms["plain"]["tokens_per_s"])
    for arm in arms.values():  # throughput and step time describe the same timed steps
        assert arm["tokens_per_s"] * arm["step_ms"] / 1000 == pytest.approx(result["batch"] * result["seq"])
    assert result["loss"]["max_abs_diff"] < 1e-3  # same batches, same math on a CPU
    assert (tmp_path / "train_speed.json").is_file()


def test_tokens_per_second_excludes_evaluation_and_counts_every_step_of_the_window(monkeypatch):
    """On a clock that only training (1 s a step) and evaluation (10 s) advance, a window of 4 steps
    with an evaluation inside it reads exactly tokens / 4 s, wherever the evaluation falls."""
    import types

    clock = {"now": 0.0}
    monkeypatch.setattr("workbench.train.time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))

    def timed_loss(model, batch):
        clock["now"] += 1.0
        return causal_lm_loss(model, batch)

    def timed_evaluate(model):
        clock["now"] += 10.0
        return {"val": 0.0}

    config = TrainConfig(steps=4, lr=1e-3, warmup_steps=1, log_every=4, eval_every=2, checkpoint=False)
    metrics = train(llama(), stream(batch_size=2), config, loss_fn=timed_loss, evaluate=timed_evaluate, progress=False)
    assert metrics["tokens_per_s"] == pytest.approx(4 * 2 * 33 / 4.0)
