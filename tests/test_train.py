"""The shared training loop: it learns, and an interrupted run resumes to the identical result."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from minivdm.train import TrainConfig, save_weights, train
from toy_training import TARGET, loss_fn, make_model, next_batch

CONFIG = TrainConfig(steps=120, learning_rate=0.05, warmup_steps=5, ema_decay=0.9, checkpoint_every=40, log_every=20)


def test_training_learns_the_target():
    result = train(make_model(), next_batch, loss_fn, CONFIG, progress=False)
    assert torch.allclose(result.model.weight, TARGET, atol=0.05)
    assert result.losses[-1] < result.losses[0] / 100


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path):
    reference = train(make_model(), next_batch, loss_fn, CONFIG, tmp_path / "reference", progress=False)

    class Interrupt(Exception):
        pass

    def interrupting_batch(step, generator):
        if step == 70:  # between the checkpoints at 40 and 80
            raise Interrupt
        return next_batch(step, generator)

    with pytest.raises(Interrupt):
        train(make_model(), interrupting_batch, loss_fn, CONFIG, tmp_path / "run", progress=False)
    assert not list((tmp_path / "run").glob("*.tmp")), "a checkpoint write was left half done"
    first_segment = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["seconds"]
    resumed = train(make_model(), next_batch, loss_fn, CONFIG, tmp_path / "run", progress=False)
    assert resumed.resumed_from == 40
    assert torch.equal(resumed.model.weight, reference.model.weight)
    assert torch.equal(resumed.ema_model.weight, reference.ema_model.weight)
    assert 0 < first_segment < resumed.seconds, "training time must add up over the resumed segments"


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path):
    train(make_model(), next_batch, loss_fn, CONFIG, tmp_path, progress=False)
    other = TrainConfig(steps=120, learning_rate=0.01, warmup_steps=5, ema_decay=0.9, checkpoint_every=40, log_every=20)
    with pytest.raises(ValueError, match="different run .TrainConfig.learning_rate: saved 0.05, now 0.01"):
        train(make_model(), next_batch, loss_fn, other, tmp_path, progress=False)
    with pytest.raises(ValueError, match="beyond steps=80"):
        train(make_model(), next_batch, loss_fn, replace(CONFIG, steps=80), tmp_path, progress=False)


def test_extending_a_finished_run_equals_training_longer_from_the_start(tmp_path):
    longer = replace(CONFIG, steps=200)
    reference = train(make_model(), next_batch, loss_fn, longer, tmp_path / "reference", progress=False)
    train(make_model(), next_batch, loss_fn, CONFIG, tmp_path / "run", progress=False)
    extended = train(make_model(), next_batch, loss_fn, longer, tmp_path / "run", progress=False)
    assert extended.resumed_from == CONFIG.steps
    assert torch.equal(extended.model.weight, reference.model.weight)
    assert torch.equal(extended.ema_model.weight, reference.ema_model.weight)


def test_save_weights_writes_safetensors_with_metadata(tmp_path):
    model = make_model()
    path = save_weights(model, tmp_path / "sub" / "w.safetensors", {"command": "x"})
    assert torch.equal(load_file(str(path))["weight"], model.weight)
    assert not list(path.parent.glob("*.tmp"))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.5)


def test_cosine_decay_warms_up_then_anneals_to_zero():
    config = TrainConfig(steps=110, warmup_steps=10, decay="cosine")
    factors = [config.learning_rate_factor(step) for step in range(config.steps)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[60] == pytest.approx(0.5)
    assert factors[-1] < 1e-3
    assert all(a >= b for a, b in zip(factors[10:], factors[11:])), "the cosine decay must never increase"
    constant = TrainConfig(steps=110, warmup_steps=10)
    assert [constant.learning_rate_factor(step) for step in (9, 50, 109)] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="decay"):
        TrainConfig(decay="linear")


def test_a_cosine_run_resumes_exactly_but_cannot_be_extended(tmp_path):
    cosine = replace(CONFIG, decay="cosine")
    reference = train(make_model(), next_batch, loss_fn, cosine, tmp_path / "reference", progress=False)

    def interrupting_batch(step, generator):
        if step == 50:
            raise KeyboardInterrupt
        return next_batch(step, generator)

    with pytest.raises(KeyboardInterrupt):
        train(make_model(), interrupting_batch, loss_fn, cosine, tmp_path / "run", progress=False)
    resumed = train(make_model(), next_batch, loss_fn, cosine, tmp_path / "run", progress=False)
    assert resumed.resumed_from == 40
    assert torch.equal(resumed.model.weight, reference.model.weight)
    with pytest.raises(ValueError, match="TrainConfig.steps: saved 120, now 200 .a cosine decay depends on steps"):
        train(make_model(), next_batch, loss_fn, replace(cosine, steps=200), tmp_path / "run", progress=False)


def _run_script(*command):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent / "distributed_training_script.py"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, *command[:-2], str(script), *command[-2:]], env=environment,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_two_processes_with_half_batches_train_exactly_like_one_process(tmp_path):
    import socket

    with socket.socket() as probe:  # a free port for the processes to meet on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _run_script(str(tmp_path / "one.pt"), str(tmp_path / "ck1"))
    # torch.distributed.run is the launcher `accelerate launch --multi_gpu` runs; on CPU the backend is gloo
    _run_script("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(port), str(tmp_path / "two.pt"), str(tmp_path / "ck2"))
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one["losses"][-1] < one["losses"][0] / 10, "the run did not learn"
    assert one["shard_sizes"] == [16] and two["shard_sizes"] == [8], "each of 2 processes must see half the batch"
    for name in one["model"]:
        assert torch.allclose(one["model"][name], two["model"][name], atol=1e-5), name
        assert torch.allclose(one["ema"][name], two["ema"][name], atol=1e-5), name
    assert one["losses"] == pytest.approx(two["losses"], rel=1e-5)
    assert (tmp_path / "ck2" / "last.pt").exists() and not list((tmp_path / "ck2").glob("*.tmp"))


def test_a_batch_that_cannot_be_split_evenly_is_refused():
    from minivdm.train import shard_batch

    x = torch.arange(12).reshape(6, 2)
    first, second = shard_batch((x, {"y": x[:, 0]}), 0, 2), shard_batch((x, {"y": x[:, 0]}), 1, 2)
    assert torch.equal(torch.cat([first[0], second[0]]), x) and torch.equal(second[1]["y"], x[3:, 0])
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        shard_batch(x, 0, 4)


def test_lr_multipliers_scale_the_step_of_the_named_parameters_only(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
    torch.manual_seed(0)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = TrainConfig(steps=1, learning_rate=1e-3, warmup_steps=0, grad_clip=1e9, lr_multipliers=(("1.", 10.0),))
    result = train(model, next_batch, lambda m, b, g: m(b).square().mean(), config, tmp_path / "ck", progress=False)
    # Adam's first step moves every weight by about lr (its gradient's sign times lr)
    moved = {name: (p.detach() - start[name]).abs() for name, p in result.model.named_parameters()}
    torch.testing.assert_close(moved["0.weight"], torch.full((2, 2), 1e-3), rtol=1e-3, atol=0)
    torch.testing.assert_close(moved["1.weight"], torch.full((2, 2), 1e-2), rtol=1e-3, atol=0)
    # the factors are part of the config a checkpoint must match
    with pytest.raises(ValueError, match="TrainConfig.lr_multipliers: saved"):
        train(model, next_batch, loss_fn, replace(config, steps=2, lr_multipliers=()), tmp_path / "ck", progress=False)
    with pytest.raises(ValueError, match="lr_multipliers"):
        TrainConfig(lr_multipliers=(("temporal", 0.0),))


def test_mixed_precision_is_for_a_gpu_and_named():
    with pytest.raises(ValueError, match="mixed_precision='fp16' is for a GPU"):
        train(make_model(), next_batch, loss_fn, CONFIG, progress=False, mixed_precision="fp16")
    with pytest.raises(ValueError, match="mixed_precision must be 'no', 'fp16' or 'bf16'"):
        train(make_model(), next_batch, loss_fn, CONFIG, progress=False, mixed_precision="fp8")


def test_ema_decay_zero_keeps_no_copy(tmp_path):
    config = replace(CONFIG, ema_decay=0.0, steps=40)
    result = train(make_model(), next_batch, loss_fn, config, tmp_path / "run", progress=False)
    assert result.ema_model is result.model  # the weights themselves: no second copy of a large model
    resumed = train(make_model(), next_batch, loss_fn, replace(config, steps=60), tmp_path / "run", progress=False)
    straight = train(make_model(), next_batch, loss_fn, replace(config, steps=60), progress=False)
    assert torch.equal(resumed.model.weight, straight.model.weight)
