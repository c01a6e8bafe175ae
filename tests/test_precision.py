"""Every precision mode, channels_last and torch.compile predict what fp32 eager predicts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lab.core.device import autocast as _autocast
from lab.core.device import resolve_precision
from lab.core.models import CustomCNN, resnet18
from lab.launch.run import start_run
from lab.levels import level_config


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"cnn": CustomCNN(10, 32, channels=(16, 32, 32, 64), hidden=64).eval(),
            "resnet18": resnet18(10, "none").eval()}


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["cnn", pytest.param("resnet18", marks=pytest.mark.slow)])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_matches_fp32(name: str, precision: str, batch: torch.Tensor) -> None:
    model = _models()[name]
    dtype = resolve_precision(precision, torch.device("cpu"))
    assert dtype in (torch.bfloat16, torch.float16)
    with torch.inference_mode():
        ref = model(batch)
        with _autocast(torch.device("cpu"), dtype):
            low = model(batch).float()
    agree = (low.argmax(1) == ref.argmax(1)).float().mean().item()
    assert agree >= 0.95
    tolerance = 0.05 if precision == "bf16" else 0.01
    assert (low - ref).abs().max().item() <= tolerance * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("name", ["cnn", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_channels_last_matches(name: str, batch: torch.Tensor) -> None:
    model = _models()[name]
    with torch.inference_mode():
        ref = model(batch)
        model = model.to(memory_format=torch.channels_last)
        out = model(batch.contiguous(memory_format=torch.channels_last))
    assert torch.equal(out.argmax(1), ref.argmax(1))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_auto_precision_is_fp32_on_cpu() -> None:
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("fp32", torch.device("cpu")) is None


@pytest.mark.slow
def test_compile_matches_eager_in_a_real_run(lab_dirs: dict[str, Path]) -> None:
    """Two identical runs but for --set compile=true: same predictions, same accuracy."""
    config = level_config(3).replace(dataset="digits", image_size=16, epochs=1, device="cpu",
                                     cnn_channels=(8, 16, 16, 32), cnn_hidden=32, augment=False,
                                     dropout=0.0, gradcam=1)
    _, eager = start_run(config, lab_dirs["runs"], lab_dirs["data"])
    run, compiled = start_run(config.replace(compile=True), lab_dirs["runs"], lab_dirs["data"])
    assert compiled["confusion"] == eager["confusion"]
    assert abs(compiled["test_loss"] - eager["test_loss"]) < 1e-3
    # Grad-CAM ran on the plain module, and the checkpoint holds plain parameter names
    assert (run.path / "gradcam" / "gradcam" / "grid.png").exists()
    state = torch.load(run.checkpoint_path, weights_only=True)["model"]
    assert not any(k.startswith("_orig_mod.") for k in state)
