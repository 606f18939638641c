"""The training problem the train-loop tests share: fit a 2x2 linear map from noisy pairs, small enough to
run in milliseconds, with randomness drawn only from the generators that ``minivdm.train`` hands out."""

import torch

TARGET = torch.tensor([[1.0, -2.0], [0.5, 3.0]])


def make_model(bias: bool = False) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(2, 2, bias=bias)


def next_batch(step, generator):
    return torch.randn(16, 2, generator=generator)


def loss_fn(model, batch, generator):
    noise = 0.01 * torch.randn(batch.shape, generator=generator)
    return ((model(batch) - batch @ TARGET.T + noise) ** 2).mean()
