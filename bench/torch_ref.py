#!/usr/bin/env python3
"""bench/torch_ref.py: the same work as bench/train_speed.lua in PyTorch (Debian's
python3-torch), for side-by-side figures. Not needed by prunert itself.

Prints `key seconds` lines: lenet_epoch, lenet_eval, mlp_epoch, import_s, peak_mb.
"""
import gzip
import resource
import statistics
import sys
import time

t_import = time.perf_counter()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
t_import = time.perf_counter() - t_import

torch.set_num_threads(2)
RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
D = "/usr/share/datasets/fashion-mnist/"


def idx(path, offset):
    with gzip.open(D + path) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


xtr = torch.from_numpy(idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255)
ytr = torch.from_numpy(idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64))
xte = torch.from_numpy(idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255)


def lenet():
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def epoch(model, batch):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    perm = torch.randperm(xtr.shape[0])
    t0 = time.perf_counter()
    for i in range(0, xtr.shape[0], batch):
        idx_ = perm[i:i + batch]
        opt.zero_grad()
        loss_fn(model(xtr[idx_]), ytr[idx_]).backward()
        opt.step()
    return time.perf_counter() - t0


res = {"lenet_epoch": [], "lenet_eval": [], "mlp_epoch": []}
for _ in range(RUNS):
    m = lenet()
    res["lenet_epoch"].append(epoch(m, 256))
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, xte.shape[0], 1000):
            m(xte[i:i + 1000])
    res["lenet_eval"].append(time.perf_counter() - t0)
    res["mlp_epoch"].append(epoch(mlp(), 64))
for k, v in res.items():
    print(k, "%.4f" % statistics.median(v))
print("import_s", "%.3f" % t_import)
print("peak_mb", "%.1f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
