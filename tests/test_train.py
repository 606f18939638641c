"""The shared training loop: it learns, and an interrupted run resumes to the identical result."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from minivdm.train import TrainConfig, save_weights, train

TARGET = torch.tensor([[1.0, -2.0], [0.5, 3.0]])


def make_model():
    torch.manual_seed(0)
    return torch.nn.Linear(2, 2, bias=False)


def next_batch(step, generator):
    return torch.randn(16, 2, generator=generator)


def loss_fn(model, batch, generator):
    noise = 0.01 * torch.randn(batch.shape, generator=generator)
    return ((model(batch) - batch @ TARGET.T + noise) ** 2).mean()


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
    resumed = train(make_model(), next_batch, loss_fn, CONFIG, tmp_path / "run", progress=False)
    assert resumed.resumed_from == 40
    assert torch.equal(resumed.model.weight, reference.model.weight)
    assert torch.equal(resumed.ema_model.weight, reference.ema_model.weight)


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path):
    train(make_model(), next_batch, loss_fn, CONFIG, tmp_path, progress=False)
    other = TrainConfig(steps=120, learning_rate=0.01, warmup_steps=5, ema_decay=0.9, checkpoint_every=40, log_every=20)
    with pytest.raises(ValueError, match="different TrainConfig"):
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
    with pytest.raises(ValueError, match="different TrainConfig"):
        train(make_model(), next_batch, loss_fn, replace(cosine, steps=200), tmp_path / "run", progress=False)
