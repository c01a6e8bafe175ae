"""`lab bench`: training and evaluation speed of the engine beside the limit and the study."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lab.cli.common import DataDirOpt, JsonOpt, data_dir, err, out, print_json


def bench(
    level: Annotated[int, typer.Option("--level", "-l", help="Seed preset: 1, 2 or 3.")] = 3,
    image_size: Annotated[int, typer.Option(help="Input side in pixels.")] = 32,
    batch_size: Annotated[int, typer.Option(help="Training batch.")] = 64,
    steps: Annotated[int, typer.Option(help="Timed steps per measurement.")] = 30,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds; the median is reported.")] = 3,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto | fp32 | bf16 | fp16.")] = "auto",
    dataset: Annotated[str, typer.Option(help="Images to time on.")] = "digits",
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format.")] = False,
    compile_model: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the engine's model (the references stay eager).")] = False,
    workers: Annotated[int, typer.Option(help="DataLoader workers of the study's pipeline.")] = 2,
    no_references: Annotated[bool, typer.Option("--no-references",
                                                help="Time the engine only.")] = False,
    modes: Annotated[bool, typer.Option(
        "--modes/--no-modes",
        help="Also time the engine with its images on the device, in host memory and read "
             "from the memory-mapped cache (data_on).")] = True,
    json_out: JsonOpt = False,
    data: DataDirOpt = None,
) -> None:
    """Images/s of the engine, the limit (bare loop on prepared batches) and the study."""
    from lab.core.bench import bench as run_bench
    from lab.errors import ConfigError
    from lab.levels import level_config

    if not 1 <= steps <= 100_000:
        raise ConfigError(f"--steps {steps}: must be between 1 and 100000")
    if not 1 <= rounds <= 100:
        raise ConfigError(f"--rounds {rounds}: must be between 1 and 100")
    if not 0 <= workers <= 64:
        raise ConfigError(f"--workers {workers}: must be between 0 and 64")
    config = level_config(level).replace(
        image_size=image_size, batch_size=batch_size, device=device, precision=precision,
        dataset=dataset, channels_last=channels_last, compile=compile_model,
        weights="none")
    if not json_out:
        err.print(f"timing level {level} at {image_size}px, batch {batch_size}, {steps} steps ...")
    with tempfile.TemporaryDirectory() as scratch:  # where the sampler's samples go
        report = run_bench(config, data_dir(data), steps=steps, workers=workers,
                           references=not no_references, rounds=rounds, modes=modes,
                           sampler=_sampler(Path(scratch), config.device))
    if json_out:
        print_json(report)
        return
    table = Table(title=f"lab bench: level {level}, {image_size}px, batch {batch_size}, "
                        f"{report['device_name']} ({report['precision']})", title_justify="left")
    table.add_column("pipeline")
    table.add_column("train img/s", justify="right")
    table.add_column("vs engine", justify="right")
    engine = report["engine_images_per_s"]
    table.add_row("engine (on-device loader)", f"{engine:,.0f}", "1.00×")
    if "limit_images_per_s" in report:
        table.add_row("limit (prepared batches)", f"{report['limit_images_per_s']:,.0f}",
                      f"{report['limit_images_per_s'] / engine:.2f}×")
        table.add_row(f"study (PIL + DataLoader, {workers} workers)",
                      f"{report['study_images_per_s']:,.0f}",
                      f"{report['study_images_per_s'] / engine:.2f}×")
    out.print(table)
    if "data_on_images_per_s" in report:
        out.print(_modes_table(report))
    if "sampled_images_per_s" in report:
        out.print(f"engine with system samples every {SAMPLE_BENCH_S:g} s (25× the default "
                  f"rate): {report['sampled_images_per_s']:,.0f} img/s = "
                  f"{report['sampled_vs_engine']:.2f}× the engine alone")
    memory = (f"peak GPU memory {report['peak_memory_mb']:,.0f} MB" if "peak_memory_mb" in report
              else f"peak RSS {report['peak_rss_mb']:,.0f} MB")
    out.print(f"evaluation {report['eval_images_per_s']:,.0f} img/s; one epoch of 40,000 + 5,000 "
              f"≈ {report['epoch_seconds_40k']:.0f} s; {memory}")
    if "engine_vs_limit" in report:
        out.print(f"engine / limit = {report['engine_vs_limit']:.3f}   "
                  f"engine / study = {report['engine_vs_study']:.3f}")


SAMPLE_BENCH_S = 0.2  # the sampler's period while timed: 25 times the runs' default of 5 s


def _sampler(scratch: Path, device: str) -> Any:
    """A factory of system samplers as runs use them (psutil, NVML on CUDA), sampling much
    more often than a run does, so any cost it has shows."""
    from lab.core.device import resolve_device
    from lab.launch.system import Nvml, SystemSampler
    from lab.runs import RunDir

    def make() -> SystemSampler:
        run = RunDir(scratch / "sampled")
        run.path.mkdir(exist_ok=True)
        resolved = resolve_device(device)
        return SystemSampler(run, resolved, SAMPLE_BENCH_S, Nvml.open(resolved))

    return make


def _modes_table(report: dict) -> Table:
    table = Table(title="the engine by where its images wait (data_on)", title_justify="left")
    table.add_column("data_on")
    table.add_column("train img/s", justify="right")
    table.add_column("vs device", justify="right")
    source = "memory-mapped cache" if report.get("disk_source") == "memmap" else \
        "in memory: this set has no cache file"
    where = {"device": "device (resident)", "host": "host (gathered, copied per batch)",
             "disk": f"disk ({source})"}
    for mode, speed in report["data_on_images_per_s"].items():
        table.add_row(where[mode], f"{speed:,.0f}", f"{report['data_on_vs_device'][mode]:.2f}×")
    return table
