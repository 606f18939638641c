"""Resume safety: a checkpoint directory continues only the run that wrote it, a state file cut
short falls back to the one before it, and a run killed with SIGKILL at random moments, resumed
each time, ends with the very weights of a run never interrupted."""

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from minivdm.io.checkpoints import CorruptCheckpointError
from minivdm.train import IncompatibleCheckpointError, TrainConfig, load_training_state, train
from toy_training import loss_fn, make_model, next_batch

CONFIG = TrainConfig(steps=20, learning_rate=0.05, warmup_steps=3, ema_decay=0.9, checkpoint_every=5, log_every=5)


def interrupted_at(stop_step):
    """A next_batch that breaks off the run when it reaches ``stop_step``."""
    def interrupting_batch(step, generator):
        if step == stop_step:
            raise KeyboardInterrupt
        return next_batch(step, generator)
    return interrupting_batch


def run(directory, config=CONFIG, model=None, batches=next_batch, **options):
    return train(make_model() if model is None else model, batches, loss_fn, config, directory, progress=False, **options)


@pytest.mark.parametrize("other_model, named", [
    (lambda: make_model(bias=True), r"1 tensors the checkpoint lacks, e.g. \['bias'\]"),
    (lambda: torch.nn.Linear(2, 3, bias=False), r"model.weight: saved \[2, 2\] float32, now \[3, 2\] float32"),
    # same names and shapes: load_state_dict alone would cast the weights and carry on
    (lambda: make_model().double(), r"model.weight: saved \[2, 2\] float32, now \[2, 2\] float64"),
])
def test_a_checkpoint_of_another_architecture_is_refused_by_name(tmp_path, other_model, named):
    run(tmp_path, replace(CONFIG, steps=5))
    with pytest.raises(IncompatibleCheckpointError, match=named):
        run(tmp_path, model=other_model())


@pytest.mark.parametrize("change", [
    {"seed": 1}, {"learning_rate": 0.01}, {"warmup_steps": 4}, {"ema_decay": 0.5}, {"grad_clip": 2.0},
    {"log_every": 10}, {"decay": "cosine"}, {"lr_multipliers": (("weight", 2.0),)},
])
def test_a_checkpoint_of_another_train_config_is_refused_by_field(tmp_path, change):
    run(tmp_path)
    (field, value), = change.items()
    with pytest.raises(IncompatibleCheckpointError) as refused:
        run(tmp_path, replace(CONFIG, **change))
    message = str(refused.value)
    assert f"TrainConfig.{field}: saved " in message
    assert f"delete {tmp_path}" in message and "new --checkpoint-dir" in message
    assert message.count("TrainConfig.") == 1, "only the field that changed may be named"


def test_a_checkpoint_of_another_run_description_is_refused_and_the_same_one_resumes(tmp_path):
    eps = {"recipe": "denoiser", "prediction_type": "eps", "dataset_size": 100}
    run(tmp_path, replace(CONFIG, steps=10), run_description=eps)
    # the same model, data and TrainConfig: only the caller knows that the target differs
    with pytest.raises(IncompatibleCheckpointError,
                       match=r"run_description\['prediction_type'\]: saved 'eps', now 'v'"):
        run(tmp_path, run_description={**eps, "prediction_type": "v"})
    with pytest.raises(IncompatibleCheckpointError, match=r"run_description\['dataset_size'\]: saved 100, now \(absent\)"):
        run(tmp_path, run_description={"recipe": "denoiser", "prediction_type": "eps"})
    assert run(tmp_path, run_description=eps).resumed_from == 10
    with pytest.raises(TypeError, match="run_description must be a dict of JSON values"):
        run(tmp_path, run_description={"data": torch.zeros(1)})


def test_steps_may_grow_and_checkpoint_every_change_and_the_result_is_unchanged(tmp_path):
    longer = replace(CONFIG, steps=30)
    reference = run(None, longer)
    run(tmp_path, replace(CONFIG, steps=10))
    extended = run(tmp_path, replace(longer, checkpoint_every=3))
    assert extended.resumed_from == 10
    assert torch.equal(extended.model.weight, reference.model.weight)
    assert torch.equal(extended.ema_model.weight, reference.ema_model.weight)


def test_a_state_from_before_run_descriptions_resumes_with_a_warning_and_then_records_one(tmp_path):
    run(tmp_path, replace(CONFIG, steps=10))
    legacy = torch.load(tmp_path / "last.pt", weights_only=True)
    del legacy["run_description"]
    torch.save(legacy, tmp_path / "last.pt")
    with pytest.warns(UserWarning, match="before training states recorded a run_description"):
        assert run(tmp_path, replace(CONFIG, steps=15), run_description={"prediction_type": "v"}).resumed_from == 10
    with pytest.raises(IncompatibleCheckpointError, match="prediction_type"):
        run(tmp_path, run_description={"prediction_type": "eps"})


def _cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _overwrite_with_garbage(path):
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))


@pytest.mark.parametrize("damage", [_cut_in_half, _overwrite_with_garbage, lambda path: path.write_bytes(b"")])
def test_an_unreadable_last_state_falls_back_to_the_one_before_it(tmp_path, damage):
    reference = run(tmp_path / "reference")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run", batches=interrupted_at(17))  # states at steps 5, 10, 15
    last, previous = tmp_path / "run" / "last.pt", tmp_path / "run" / "previous.pt"
    assert load_training_state(previous)["step"] == 10, "the state before the last one must be kept"
    damage(last)
    with pytest.warns(RuntimeWarning, match=rf"cannot read the training state {last} .*resuming from the one before "
                                            rf"it, {previous} \(step 10\)"):
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "run", batches=interrupted_at(17))  # replays 10..15 and writes a state at 15
    # the unreadable file was replaced, not kept as the fallback of the next crash
    assert load_training_state(previous)["step"] == 10 and load_training_state(last)["step"] == 15
    resumed = run(tmp_path / "run")
    assert resumed.resumed_from == 15
    assert torch.equal(resumed.model.weight, reference.model.weight)
    assert torch.equal(resumed.ema_model.weight, reference.ema_model.weight)


def test_a_run_killed_between_the_two_renames_resumes_from_the_previous_state(tmp_path):
    reference = run(tmp_path / "reference")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run", batches=interrupted_at(17))
    (tmp_path / "run" / "last.pt").unlink()  # last.pt moved to previous.pt, the new one not yet in place
    resumed = run(tmp_path / "run")
    assert resumed.resumed_from == 10
    assert torch.equal(resumed.model.weight, reference.model.weight)


def test_unreadable_states_are_errors_that_name_the_file_and_what_to_do(tmp_path):
    run(tmp_path, replace(CONFIG, steps=10))
    last, previous = tmp_path / "last.pt", tmp_path / "previous.pt"
    _cut_in_half(last)
    with pytest.raises(CorruptCheckpointError, match=rf"cannot read the training state {last} \(\d+ bytes\).*truncated"):
        load_training_state(last)
    previous.write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match=rf"no readable training state in {tmp_path}: .*{last}.*{previous}"
                                                     rf".*Delete {tmp_path} to start the run over"):
        run(tmp_path)
    torch.save({"weight": torch.zeros(2, 2)}, last)  # readable, but no training state
    with pytest.raises(CorruptCheckpointError, match=rf"{last} is not a training state written by minivdm.train"):
        load_training_state(last)


KILLS = 8


def test_a_run_killed_at_random_moments_and_resumed_ends_with_the_uninterrupted_weights(tmp_path):
    import kill_resume_script

    script = Path(kill_resume_script.__file__)
    checkpoint_dir, out = tmp_path / "run", tmp_path / "weights.pt"
    chance = random.Random(19)
    # distinct steps spread over the run, in order: each start reaches the next one, so every kill
    # lands in a run that still has steps to go
    kill_targets = sorted(chance.sample(range(1, kill_resume_script.CONFIG.steps - 4), KILLS))
    kill_steps = []  # the step each killed process had reached
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(KILLS + 1):
        with open(tmp_path / "stderr.txt", "w") as stderr, subprocess.Popen(
                [sys.executable, str(script), str(checkpoint_dir), str(out)], stdout=subprocess.PIPE, stderr=stderr,
                text=True, env=environment) as process:
            line = process.stdout.readline()  # blocks until the run draws its first batch, or ends
            if line and len(kill_steps) < KILLS:
                step, target = int(line), kill_targets[len(kill_steps)]
                while step < target and (line := process.stdout.readline()):
                    step = int(line)
                time.sleep(chance.uniform(0, 0.01))  # into the step's update or its checkpoint write
                process.send_signal(signal.SIGKILL)
                if process.wait(timeout=60) == -signal.SIGKILL:
                    kill_steps.append(step)
                    continue
            process.stdout.read()
            assert process.wait(timeout=120) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
        if out.exists():
            break
    assert len(kill_steps) == KILLS, f"only {len(kill_steps)} kills landed before the run ended"
    assert len(set(kill_steps)) > KILLS // 2, f"the kills must spread over the run, got steps {kill_steps}"

    reference = kill_resume_script.run(None)
    resumed = torch.load(out, weights_only=True)
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), f"{name} differs from the uninterrupted run's (kills at steps {kill_steps})"
