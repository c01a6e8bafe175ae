"""Models: ResNet18 weights from a file or torchvision's cache, the custom CNN at any size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from lab.core.models import CustomCNN, build_model, weights_cache_path
from lab.errors import DataError, WeightsError
from lab.levels import level_config


def _saved_resnet(path: Path, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = resnet18(weights=None).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_resnet_weights_from_a_file(tmp_path: Path) -> None:
    state = _saved_resnet(tmp_path / "r18.pt")
    model = build_model(level_config(1).replace(weights=str(tmp_path / "r18.pt")), 7)
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 7  # the 1000-way head is replaced for the class count


def test_resnet_imagenet_weights_from_the_torch_cache(lab_dirs: dict[str, Path]) -> None:
    path = weights_cache_path()
    assert str(path).startswith(str(lab_dirs["torch_home"]))
    state = _saved_resnet(path, seed=2)
    model = build_model(level_config(2), 10)
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert isinstance(model.fc[0], torch.nn.Dropout) and model.fc[0].p == 0.5
    assert model.fc[1].out_features == 10


def test_missing_imagenet_weights_offline_names_three_ways_out() -> None:
    with pytest.raises(WeightsError) as info:
        build_model(level_config(1), 10)
    text = str(info.value)
    assert "--weights FILE" in text and "--weights none" in text
    assert str(weights_cache_path().parent) in text
    assert "\n" not in text


def test_bad_weights_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "wrong.pt")
    for name, error, message in [("missing.pt", WeightsError, "does not exist"),
                                 ("junk.pt", DataError, "cannot be read"),
                                 ("wrong.pt", DataError, "misses")]:
        with pytest.raises(error, match=message):
            build_model(level_config(1).replace(weights=str(tmp_path / name)), 10)


@pytest.mark.parametrize("size", [16, 32, 57, 224])
def test_custom_cnn_any_input_size(size: int) -> None:
    model = CustomCNN(num_classes=4, image_size=size, channels=(4, 8, 8, 16), hidden=32)
    assert len(model.features) == 4
    assert model(torch.randn(2, 3, size, size)).shape == (2, 4)


def test_level3_preset_is_the_study_cnn() -> None:
    model = build_model(level_config(3).replace(image_size=32), 10)
    kinds = [type(m).__name__ for m in model.features[0]]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    head = [type(m).__name__ for m in model.classifier]
    assert head == ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]


def test_custom_cnn_stacks_convs_per_block() -> None:
    model = build_model(level_config(3).replace(image_size=32, cnn_convs=2), 10)
    kinds = [type(m).__name__ for m in model.features[1]]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["MaxPool2d"]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_tta_flip_averages_an_image_and_its_mirror() -> None:
    from lab.core.evaluate import evaluate
    from lab.data.loader import DeviceLoader

    torch.manual_seed(0)
    model = CustomCNN(3, 16, channels=(4, 8, 8, 8), hidden=8).eval()
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    labels = torch.arange(8) % 3
    loader = DeviceLoader(images, labels, batch_size=8, image_size=16)
    plain = evaluate(model, loader, None, want_predictions=True)
    tta = evaluate(model, loader, None, want_predictions=True, tta_flip=True)
    (batch, _), = list(loader)
    with torch.no_grad():
        expected = ((model(batch) + model(torch.flip(batch, dims=[-1]))) / 2).softmax(1)
    assert torch.allclose(torch.from_numpy(tta["confidence"]).float(), expected.amax(1), atol=1e-5)
    assert not torch.allclose(torch.from_numpy(plain["confidence"]).float(), expected.amax(1))
