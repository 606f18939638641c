"""A short resumable training run that tests/test_train_resume.py kills with SIGKILL at random
moments and starts again until it finishes. Usage: kill_resume_script.py CHECKPOINT_DIR OUT.pt

It prints each step as it draws that step's batch, so the test knows how far the run has come,
and writes the final weights to OUT.pt (atomically) only once training is over.
"""

import os
import sys

import torch

from minivdm.train import TrainConfig, train

# a checkpoint every other step: a kill lands in a write, between writes, or in steps the resumed
# run has to replay
CONFIG = TrainConfig(steps=40, learning_rate=0.02, warmup_steps=4, ema_decay=0.9, checkpoint_every=2, log_every=5)
DESCRIPTION = {"recipe": "kill-resume-test", "batch_size": 8}


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 4))


def next_batch(step: int, generator: torch.Generator) -> torch.Tensor:
    print(step, flush=True)
    return torch.randn(8, 4, generator=generator)


def loss_fn(model: torch.nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # noise from the loss generator and dropout from the global one: both must resume exactly
    target = batch.flip(1) + 0.01 * torch.randn(batch.shape, generator=generator)
    return ((model(batch) - target) ** 2).mean()


def run(checkpoint_dir) -> dict[str, torch.Tensor]:
    result = train(make_model(), next_batch, loss_fn, CONFIG, checkpoint_dir, run_description=DESCRIPTION,
                   progress=False)
    return {**{f"model.{k}": v for k, v in result.model.state_dict().items()},
            **{f"ema.{k}": v for k, v in result.ema_model.state_dict().items()}}


if __name__ == "__main__":
    checkpoint_dir, out = sys.argv[1], sys.argv[2]
    weights = run(checkpoint_dir)
    torch.save(weights, out + ".tmp")
    os.replace(out + ".tmp", out)
