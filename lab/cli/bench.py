"""`lab bench`: training and evaluation speed of the engine beside the limit and the study."""

from __future__ import annotations

from typing import Annotated

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
    report = run_bench(config, data_dir(data), steps=steps, workers=workers,
                       references=not no_references, rounds=rounds)
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
    memory = (f"peak GPU memory {report['peak_memory_mb']:,.0f} MB" if "peak_memory_mb" in report
              else f"peak RSS {report['peak_rss_mb']:,.0f} MB")
    out.print(f"evaluation {report['eval_images_per_s']:,.0f} img/s; one epoch of 40,000 + 5,000 "
              f"≈ {report['epoch_seconds_40k']:.0f} s; {memory}")
    if "engine_vs_limit" in report:
        out.print(f"engine / limit = {report['engine_vs_limit']:.3f}   "
                  f"engine / study = {report['engine_vs_study']:.3f}")
