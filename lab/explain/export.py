"""`lab export`: a trained run's model as a file other tools load, with what they need to use it.

Three formats: safetensors (the weights, under the key names torchvision's own model uses, so
`torchvision.models.resnet18(num_classes=N).load_state_dict(..., strict=True)` takes a Level 1
or 2 export as is: the dropout that Level 2 folds into `fc` is dropped from the names, it holds
no weights), TorchScript (a traced module) and ONNX (torch.export-based exporter, dynamic
batch). Each carries its metadata inside the file (safetensors' header, a TorchScript extra
file, ONNX `metadata_props`): class names, input size, mean/std, level, run id, test accuracy.

After writing, the file is loaded back the way a user would and run against the eager model on
the run's own test images: the largest logit difference and the top-1 agreement are printed.

Tolerance: the exported graph computes the same float32 operations with other kernels, in
another order; rounding then differs by about 1e-6 on logits of ResNet18 (measured). Parity
passes at |Δ| <= 1e-3 + 1e-4·|logit|, a thousand times that, and far below any gap that decides
a class; a top-1 disagreement counts only where the eager model's top two logits are further
apart than the tolerance (a near-tie may flip without either answer being wrong).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lab import extras
from lab.errors import ConfigError, DataError, LabError
from lab.runs import RunDir, atomic_write_bytes

FORMATS = ("safetensors", "torchscript", "onnx")
SUFFIX = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}
EXTRA = {"safetensors": "export", "onnx": "onnx"}  # the extra each format needs (lab.extras)
ATOL, RTOL = 1e-3, 1e-4
METADATA_KEY = "lab"
PARITY_IMAGES = 256
DEFAULT_OPSET = 18


@dataclass
class Exported:
    """What `export_run` wrote and how the file compared with the eager model."""

    path: Path
    format: str
    metadata: dict[str, Any]
    max_abs_diff: float | None = None
    top1_agree: float | None = None
    images: int = 0
    inputs: str = ""  # "test images" or why other inputs were used
    passed: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "metadata": self.metadata,
                "parity": {"max_abs_diff": self.max_abs_diff, "top1_agree": self.top1_agree,
                           "images": self.images, "inputs": self.inputs,
                           "passed": self.passed, "atol": ATOL, "rtol": RTOL},
                "notes": self.notes}


def require(fmt: str) -> None:
    """The packages `fmt` needs, or one line naming the extra that installs them."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)}")
    if fmt in EXTRA:
        extras.require(EXTRA[fmt], f"--format {fmt}")


def portable_state_dict(model: nn.Module, config: Any) -> dict[str, torch.Tensor]:
    """The weights under the names of the plain architecture: for ResNet18 with dropout,
    `fc.1.*` becomes `fc.*` (nn.Sequential(Dropout, Linear) holds the Linear at index 1)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if config.model == "resnet18":
        state = {("fc." + k[len("fc.1."):] if k.startswith("fc.1.") else k): v
                 for k, v in state.items()}
    return state


def metadata(run: RunDir, config: Any, classes: list[str], loaded: Any, weights: str,
             source_size: int | None) -> dict[str, Any]:
    from lab import __version__
    from lab.data.augment import IMAGENET_MEAN, IMAGENET_STD

    result = run.result() or {}
    architecture = ("torchvision.models.resnet18" if config.model == "resnet18"
                    else "lab.core.models.CustomCNN")
    meta: dict[str, Any] = {
        "format": "lab-export/1", "lab_version": __version__, "run_id": run.id,
        "level": config.level, "model": config.model, "architecture": architecture,
        "classes": classes, "num_classes": len(classes), "input_size": config.image_size,
        "source_size": source_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "input": "float32 NCHW RGB scaled to [0, 1], resized bilinearly (no antialias) to "
                 "input_size x input_size, then (x - mean) / std per channel; the run's images "
                 "were first stored at source_size",
        "test_acc": result.get("test_acc"), "weights": weights,
        "epoch": loaded.state.get("epoch"), "dataset": config.dataset,
    }
    if config.model == "cnn":
        meta["cnn"] = {"channels": list(config.cnn_channels), "hidden": config.cnn_hidden,
                       "dropout": config.dropout, "convs": config.cnn_convs,
                       "image_size": config.image_size}
    return meta


def export_run(run: RunDir, fmt: str, out: Path | None = None, *, weights: str = "last",
               data_dir: Path | None = None, check: bool = True,
               opset: int = DEFAULT_OPSET) -> Exported:
    """Write `run`'s model as `fmt` to `out` (default `runs/<id>/export/model.<suffix>`),
    then check it against the eager model. Raises a one-line LabError on anything wrong;
    an existing file at `out` is replaced only once the new one is complete."""
    from lab.core.models import build_model
    from lab.runs.checkpoint import load_model_state, load_weights

    require(fmt)
    if not 7 <= opset <= 25:
        raise ConfigError(f"--opset {opset}: must be between 7 and 25")
    config = run.config()
    classes = run_classes(run)
    loaded = load_weights(run, weights)
    model = build_model(config.replace(weights="none"), len(classes))
    load_model_state(model, loaded.state["model"], loaded.path)
    model.eval()
    inputs, source_size, where = parity_inputs(config, data_dir)
    meta = metadata(run, config, classes, loaded, weights, source_size)
    out = Path(out) if out is not None else run.path / "export" / f"model{SUFFIX[fmt]}"
    if out.is_dir():
        raise ConfigError(f"-o {out} is a directory: give a file name, e.g. "
                          f"{out / ('model' + SUFFIX[fmt])}")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = {"safetensors": _write_safetensors, "torchscript": _write_torchscript,
              "onnx": _write_onnx}[fmt]
    try:
        data = writer(model, config, meta, inputs[:2], opset)
    except LabError:
        raise
    except Exception as exc:  # noqa: BLE001 - an exporter's failure is one line, never a trace
        raise DataError(f"{fmt} export failed: {type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
                        ) from None
    atomic_write_bytes(out, data)
    exported = Exported(out, fmt, meta, inputs=where)
    if check:
        compare(exported, model, config, inputs)
    return exported


def run_classes(run: RunDir) -> list[str]:
    result = run.result()
    if result and result.get("classes"):
        return list(result["classes"])
    for event in run.events():
        if event.get("event") == "start" and event.get("classes"):
            return list(event["classes"])
    raise DataError(f"run {run.id} does not record its class names (no result.json and no "
                    "start event)")


def parity_inputs(config: Any, data_dir: Path | None) -> tuple[torch.Tensor, int | None, str]:
    """Up to PARITY_IMAGES of the run's test images, prepared as in training; when the data
    set is not on this machine, seeded noise of the same shape, and the reason says so."""
    from lab.data.augment import resize_normalize

    if data_dir is not None:
        try:
            from lab.core.prepare import split_data

            _data, _split, test_x, _test_y = split_data(config, data_dir)
            x = torch.from_numpy(test_x[:PARITY_IMAGES]).permute(0, 3, 1, 2).contiguous()
            return (resize_normalize(x, config.image_size), int(test_x.shape[1]),
                    f"{len(x)} test images of {config.dataset}")
        except LabError as exc:
            reason = f"seeded noise: {exc.message}"
    else:
        reason = "seeded noise: no data directory"
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 3, config.image_size, config.image_size), generator=g,
                      dtype=torch.uint8)
    return resize_normalize(x, config.image_size), None, reason


def _write_safetensors(model: nn.Module, config: Any, meta: dict[str, Any], _x: torch.Tensor,
                       _opset: int) -> bytes:
    from safetensors.torch import save

    return save(portable_state_dict(model, config), metadata={METADATA_KEY: json.dumps(meta)})


def _write_torchscript(model: nn.Module, _config: Any, meta: dict[str, Any], x: torch.Tensor,
                       _opset: int) -> bytes:
    import io

    with warnings.catch_warnings(), torch.no_grad():  # deprecated upstream; still asked for
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, x)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})
    return buf.getvalue()


def _write_onnx(model: nn.Module, _config: Any, meta: dict[str, Any], x: torch.Tensor,
                opset: int) -> bytes:
    import contextlib
    import io
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(model, (x,), str(path), input_names=["images"],
                          output_names=["logits"], opset_version=opset,
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                          external_data=False, verbose=False)
        proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    return proto.SerializeToString()


def read_metadata(path: Path, fmt: str) -> dict[str, Any]:
    """The metadata an export carries, read back with each format's own library."""
    if fmt == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return json.loads(fh.metadata()[METADATA_KEY])
    if fmt == "torchscript":
        extra = {f"{METADATA_KEY}.json": ""}
        with warnings.catch_warnings():  # deprecated upstream, still the format asked for
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return json.loads(extra[f"{METADATA_KEY}.json"])
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(props[METADATA_KEY])


def load_exported(path: Path, fmt: str, meta: dict[str, Any]) -> Any:
    """A callable `images -> logits` from the file alone, as another tool would load it."""
    if fmt == "safetensors":
        from safetensors.torch import load_file

        plain = plain_model(meta)
        plain.load_state_dict(load_file(str(path)), strict=True)
        plain.eval()
        return lambda x: plain(x)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
        module.eval()
        return lambda x: module(x)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def plain_model(meta: dict[str, Any]) -> nn.Module:
    """The architecture an export names, built from its metadata alone (no lab config)."""
    if meta["architecture"] == "torchvision.models.resnet18":
        from torchvision.models import resnet18

        return resnet18(num_classes=meta["num_classes"])
    from lab.core.models import CustomCNN

    cnn = meta["cnn"]
    return CustomCNN(meta["num_classes"], cnn["image_size"], tuple(cnn["channels"]),
                     cnn["hidden"], cnn["dropout"], cnn["convs"])


def compare(exported: Exported, model: nn.Module, config: Any, inputs: torch.Tensor) -> None:
    """Fill in the parity figures: the file loaded back against the eager model."""
    run = load_exported(exported.path, exported.format, read_metadata(exported.path,
                                                                      exported.format))
    worst, agree, counted = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(inputs), 64):
            x = inputs[start:start + 64]
            eager, other = model(x), run(x).float()
            worst = max(worst, float((eager - other).abs().max()))
            top2 = eager.topk(2, dim=1).values if eager.shape[1] > 1 else None
            decided = torch.ones(len(x), dtype=torch.bool) if top2 is None else \
                (top2[:, 0] - top2[:, 1]) > ATOL + RTOL * top2[:, 0].abs()
            same = eager.argmax(1) == other.argmax(1)
            agree += int((same | ~decided).sum())
            counted += len(x)
            if not torch.allclose(other, eager, atol=ATOL, rtol=RTOL):
                exported.passed = False
    exported.max_abs_diff = worst
    exported.top1_agree = agree / counted if counted else None
    exported.images = counted
    if exported.passed is None:
        exported.passed = agree == counted
