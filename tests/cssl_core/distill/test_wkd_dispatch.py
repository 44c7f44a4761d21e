"""The registry and dispatcher: config errors are loud, the teacher never gets a gradient."""

from __future__ import annotations

import pytest
import torch

from cssl_core.distill import WKD_MODES, wkd_gaussian, wkd_loss, wkd_options


def test_registry_and_dispatch() -> None:
    assert set(WKD_MODES) == {"gaussian", "ot", "sliced"}
    s, t = torch.randn(4, 5, 3), torch.randn(4, 5, 3)
    assert wkd_loss(s, t, "gaussian", eps=0.0).item() == wkd_gaussian(s, t, eps=0.0).item()
    assert wkd_options("ot") == {"solver": "emd", "reg": 0.05, "over": "samples", "max_iter": None, "stop_thr": 1e-6}


def test_unknown_mode_and_option_are_rejected_with_what_is_allowed() -> None:
    s = torch.randn(4, 3)
    with pytest.raises(ValueError, match="known modes: gaussian, ot, sliced"):
        wkd_loss(s, s, "mse")
    with pytest.raises(ValueError, match="n_projection.*accepts: n_projections, over, seed"):
        wkd_loss(s, s, "sliced", n_projection=10)
    with pytest.raises(ValueError, match="accepts: eps"):
        wkd_loss(s, s, "gaussian", reg=1.0)


def test_shape_checks() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        wkd_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"\(B, C\) or \(B, N, C\)"):
        wkd_loss(torch.randn(4), torch.randn(4))


@pytest.mark.parametrize("mode", sorted(WKD_MODES))
@pytest.mark.parametrize("shape", [(6, 4, 5), (6, 5)])
def test_teacher_never_gets_grad_and_half_inputs_work(mode: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    s = torch.randn(*shape, requires_grad=True)
    t = torch.randn(*shape, requires_grad=True)
    loss = wkd_loss(s, t, mode)
    loss.backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all()
    half = wkd_loss(s.detach().half(), t.detach().half(), mode)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(loss.item(), rel=1e-2, abs=1e-3)


def test_the_default_gaussian_mode_never_imports_pot():
    """`import ot` costs seconds of CPU in every stage process that imports the strategies (pretrain, export,
    audit); only the `ot` and `sliced` modes need it."""
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT

    code = ("import sys, torch, tasks.pretrain, tasks.export, tasks.privacy_audit, cssl_core.strategies\n"
            "from cssl_core.distill import wkd_loss\n"
            "wkd_loss(torch.randn(4, 3, 8), torch.randn(4, 3, 8), 'gaussian')\n"
            "print('ot' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert done.stdout.strip() == "False"
