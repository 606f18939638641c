"""Trains a small regression with minivdm.train; run by tests/test_train.py on 1 process and, via
torch.distributed.run (what `accelerate launch` starts), on 2 CPU processes. Usage: script.py OUT.pt"""

import os
import sys

import torch

from minivdm.train import TrainConfig, train

TARGET = torch.tensor([[1.0, -2.0, 0.5], [0.5, 3.0, -1.0]])
CONFIG = TrainConfig(steps=100, learning_rate=0.05, warmup_steps=5, ema_decay=0.9, checkpoint_every=40, log_every=10)


def next_batch(step, generator):
    # every random number is drawn here, for the global batch: each process takes its shard of it
    x = torch.randn(16, 3, generator=generator)
    noise = 0.1 * torch.randn(16, 2, generator=generator)
    return x, x @ TARGET.T + noise


SHARD_SIZES = set()


def loss_fn(model, batch, generator):
    x, y = batch
    SHARD_SIZES.add(x.shape[0])
    return ((model(x) - y) ** 2).mean()


if __name__ == "__main__":
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    result = train(model, next_batch, loss_fn, CONFIG, sys.argv[2] if len(sys.argv) > 2 else None, progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({"model": result.model.state_dict(), "ema": result.ema_model.state_dict(), "losses": result.losses,
                    "shard_sizes": sorted(SHARD_SIZES)},
                   sys.argv[1])
