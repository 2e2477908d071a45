#!/usr/bin/python3
"""Makes tests/data/torch_small.npz: a PyTorch model's state dict saved the documented way,
np.savez(p, **{k: v.numpy() for k, v in m.state_dict().items()}), plus an input and PyTorch's
eval-mode output for it (torch_small_io.npz). Run with Debian's python3-torch; prunert itself
never needs torch. The architecture is rebuilt in tests/lua/interchange_spec.lua."""
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(0)
m = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 6, 3, groups=2), nn.ReLU(),
    nn.Flatten(), nn.Linear(6 * 2 * 2, 5), nn.Tanh(), nn.Linear(5, 3))
# move BatchNorm's running statistics off their initial values
m.train()
for _ in range(3):
    m(torch.randn(8, 1, 8, 8) * 2 + 0.5)
m.eval()
x = torch.randn(2, 1, 8, 8)
with torch.no_grad():
    y = m(x)
np.savez("torch_small.npz", **{k: v.numpy() for k, v in m.state_dict().items()})
np.savez("torch_small_io.npz", x=x.numpy(), y=y.numpy())
print(sorted(m.state_dict().keys()))
