"""A wall-clock budget for a training run (``train(max_seconds=...)``, ``train-vdm --max-minutes``): the
run stops after the step that ends past it, checkpoints there and resumes from it, with any budget;
and the train-vdm options that go with it (--device, --batch-size) are checked before any work."""

from dataclasses import replace

import pytest
import torch

from minivdm.__main__ import main
from minivdm.train import TrainConfig, load_training_state, train
from toy_training import loss_fn, make_model, next_batch

CONFIG = TrainConfig(steps=20, learning_rate=0.05, warmup_steps=3, ema_decay=0.9, checkpoint_every=5, log_every=5)


def run(directory, config=CONFIG, **options):
    return train(make_model(), next_batch, loss_fn, config, directory, progress=False, **options)


def test_a_spent_budget_stops_after_one_step_checkpoints_it_and_the_run_resumes_there(tmp_path):
    stopped = run(tmp_path, max_seconds=0.0)
    assert stopped.stopped_early and stopped.steps_done == 1 and stopped.resumed_from == 0
    # step 1 is no multiple of checkpoint_every: without the early checkpoint that step would be lost
    assert load_training_state(tmp_path / "last.pt")["step"] == 1
    assert torch.equal(stopped.model.weight, load_training_state(tmp_path / "last.pt")["model"]["weight"])

    # the budget is no part of the run: another budget, then none, continue the same checkpoint
    again = run(tmp_path, max_seconds=0.0)
    assert again.resumed_from == 1 and again.steps_done == 2 and again.stopped_early
    finished = run(tmp_path)
    assert finished.resumed_from == 2 and finished.steps_done == CONFIG.steps and not finished.stopped_early
    # and the pieces add up to the run never stopped
    assert torch.equal(finished.model.weight, run(None).model.weight)
    assert torch.equal(finished.ema_model.weight, run(None).ema_model.weight)


def test_a_budget_that_runs_out_on_a_checkpoint_step_writes_it_once(tmp_path):
    stopped = run(tmp_path, replace(CONFIG, checkpoint_every=1), max_seconds=0.0)
    assert stopped.steps_done == 1 and load_training_state(tmp_path / "last.pt")["step"] == 1
    assert not (tmp_path / "previous.pt").exists(), "the step's state was written twice"


def test_without_a_budget_or_with_a_large_one_nothing_changes(tmp_path):
    plain = run(tmp_path / "plain")
    assert plain.steps_done == CONFIG.steps and not plain.stopped_early
    assert load_training_state(tmp_path / "plain" / "last.pt")["step"] == CONFIG.steps
    roomy = run(tmp_path / "roomy", max_seconds=3600.0)
    assert roomy.steps_done == CONFIG.steps and not roomy.stopped_early
    assert torch.equal(plain.model.weight, roomy.model.weight) and plain.losses == roomy.losses
    # a finished run called again does nothing and says where it is
    assert run(tmp_path / "plain", max_seconds=0.0).steps_done == CONFIG.steps
    # no checkpoint directory: the budget still stops the run
    assert run(None, max_seconds=0.0).steps_done == 1


@pytest.mark.parametrize("budget, steps_done", [(2.5, 3), (3.0, 4)])
def test_the_run_stops_after_the_first_step_that_ends_past_the_budget(monkeypatch, budget, steps_done):
    import minivdm.train

    class Clock:  # each step takes one second exactly
        now = 0.0

        @staticmethod
        def perf_counter():
            return Clock.now

    def one_second_batches(step, generator):
        Clock.now += 1.0
        return next_batch(step, generator)

    monkeypatch.setattr(minivdm.train, "time", Clock)
    result = train(make_model(), one_second_batches, loss_fn, CONFIG, None, progress=False, max_seconds=budget)
    # a budget of 3 s is spent only once more than 3 s have gone by: after the 4th step, not the 3rd
    assert result.steps_done == steps_done and result.stopped_early


@pytest.mark.parametrize("budget", [-1.0, float("nan"), "60", True])
def test_a_budget_that_is_no_number_of_seconds_is_refused(budget):
    with pytest.raises(ValueError, match="max_seconds must be a number of seconds >= 0"):
        run(None, max_seconds=budget)


@pytest.mark.parametrize("options, message", [
    (["--device", "cuda"], "train-vdm: --device cuda, but no CUDA device is visible"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--batch-size", "0"], "expected a positive whole number, got '0'"),
    (["--batch-size", "-4"], "expected a positive whole number, got '-4'"),
    (["--max-minutes", "0"], "--max-minutes must be a number of minutes > 0, got 0.0"),
    (["--max-minutes", "nan"], "--max-minutes must be a number of minutes > 0, got nan"),
])
def test_train_vdm_refuses_a_wrong_option_before_any_work(tmp_path, monkeypatch, capsys, options, message):
    import minivdm.toy.vdm as toy_vdm

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as here, even on a machine with a GPU

    def no_work(*args, **kwargs):
        raise AssertionError("the option should have been refused before training")

    monkeypatch.setattr(toy_vdm, "train_toy_vdm", no_work)
    with pytest.raises(SystemExit) as exit_info:
        main(["train-vdm", "--out", str(tmp_path / "o"), *options])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_train_vdm_passes_device_batch_size_and_budget_on(tmp_path, monkeypatch):
    import minivdm.toy.vdm as toy_vdm

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    captured = {}
    monkeypatch.setattr(toy_vdm, "train_toy_vdm", lambda out, **options: captured.update(options) or out)
    assert main(["train-vdm", "--out", str(tmp_path / "o"), "--device", "cuda", "--batch-size", "32",
                 "--max-minutes", "1.5"]) == 0
    assert captured["device"] == "cuda" and captured["batch_size"] == 32 and captured["max_minutes"] == 1.5
    captured.clear()
    assert main(["train-vdm", "--out", str(tmp_path / "o")]) == 0
    assert captured["device"] == "cpu" and "batch_size" not in captured and captured["max_minutes"] is None


def test_a_toy_vdm_out_of_time_is_saved_with_the_steps_it_reached_and_resumes_with_another_budget(tmp_path):
    from minivdm.toy import read_metadata
    from minivdm.toy.vdm import TOY_VDM_TRAIN, load_toy_vdm, train_toy_vdm

    config = replace(TOY_VDM_TRAIN, steps=2)
    options = dict(config=config, dataset_size=8, batch_size=2, image_model=None, checkpoint_dir=tmp_path / "ck")  # noqa: C408
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        train_toy_vdm(tmp_path / "o", **{**options, "batch_size": 0})
    with pytest.raises(ValueError, match="max_minutes must be > 0"):
        train_toy_vdm(tmp_path / "o", **options, max_minutes=0.0)

    out = train_toy_vdm(tmp_path / "o", **options, max_minutes=1e-9)  # spent after the first step
    metadata = read_metadata(out / "vdm.safetensors")
    assert metadata["steps"] == "1" and metadata["stopped_early_at_max_minutes"] == "1e-09"
    assert metadata["batch_size"] == "2"
    load_toy_vdm(out)  # the model so far is a whole folder
    assert load_training_state(tmp_path / "ck" / "last.pt")["run_description"]["batch_size"] == 2

    out = train_toy_vdm(tmp_path / "o", **options, max_minutes=60.0)  # another budget: the same run goes on
    metadata = read_metadata(out / "vdm.safetensors")
    assert metadata["steps"] == "2" and "stopped_early_at_max_minutes" not in metadata
    assert load_training_state(tmp_path / "ck" / "last.pt")["step"] == 2
