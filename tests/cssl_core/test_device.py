"""The one device rule: "auto" and explicit names, and the device a model already lives on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cssl_core.device import device_of, resolve_device


def test_auto_is_cuda_exactly_when_a_gpu_is_there():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_explicit_names_and_devices_pass_through():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # naming a device needs no GPU
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(RuntimeError):
        resolve_device("gpu")


def test_device_of_reads_the_parameters_and_defaults_to_cpu():
    assert device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert device_of(nn.ReLU()) == torch.device("cpu")
    if torch.cuda.is_available():
        assert device_of(nn.Linear(2, 2).cuda()).type == "cuda"
