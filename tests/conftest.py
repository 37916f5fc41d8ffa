"""Shared test configuration: one torch thread (the suite's tensors are small, and worker
threads only wait on each other on a shared 2-core machine)."""

import torch

torch.set_num_threads(1)
