"""`lab run`, `lab resume` and `lab demo`: training in the foreground, for people and batch jobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from lab.cli.common import DataDirOpt, JsonOpt, RunsDirOpt, data_dir, err, out, print_json, runs_dir
from lab.configfile import read_config_file
from lab.core.stopping import SignalStop
from lab.levels import build_config

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
# The overrides of a run's config, shared with `lab submit`.
ConfigFileOpt = Annotated[Path | None, typer.Option(
    "--config", help="A config file (.toml, .json, .yaml): its level's preset with the file's "
    "values over it, e.g. level = 3 and epochs = 1; named options and --set go over the file. "
    "`lab levels --level N --format toml` writes a complete one; a run's config.json works as "
    "it is.", show_default=False)]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs.", show_default=False)]
ImageSizeOpt = Annotated[int | None, typer.Option(help="Input side in pixels.",
                                                  show_default=False)]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Training batch.", show_default=False)]
LrOpt = Annotated[float | None, typer.Option(help="Learning rate.", show_default=False)]
WeightsOpt = Annotated[str | None, typer.Option(help="imagenet | none | FILE.",
                                                show_default=False)]
DatasetOpt = Annotated[str | None, typer.Option(help="cifar10 | digits | imagefolder:PATH | NAME.",
                                                show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N.",
                                               show_default=False)]
PrecisionOpt = Annotated[str | None, typer.Option(help="auto | fp32 | bf16 | fp16.",
                                                  show_default=False)]
SeedOpt = Annotated[int | None, typer.Option(help="Training seed.", show_default=False)]
NprocOpt = Annotated[int | None, typer.Option(
    help="Data-parallel processes (torchrun + DDP): one GPU each, or gloo on the CPU.",
    show_default=False)]
RecipeOpt = Annotated[str, typer.Option(help="seed (the study's presets) | tuned.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Any config field: --set KEY=VALUE (repeatable; see `lab levels --json`).",
    show_default=False)]


def run(
    level: Annotated[int | None, typer.Option("--level", "-l", help="Seed preset: 1, 2 or 3.",
                                              show_default=False)] = None,
    config_file: ConfigFileOpt = None,
    epochs: EpochsOpt = None,
    image_size: ImageSizeOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    seed: SeedOpt = None,
    nproc: NprocOpt = None,
    assignments: SetOpt = None,
    recipe: RecipeOpt = "seed",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
) -> None:
    """Train one run in the foreground and print its result; exit 0 only on success."""
    source = read_config_file(config_file) if config_file is not None else None
    if source is not None and source.is_study:
        raise source.study_error("queue it with lab submit --config FILE")
    config = build_config(level, source, dict(
        epochs=epochs, image_size=image_size, batch_size=batch_size, lr=lr, weights=weights,
        dataset=dataset, device=device, precision=precision, seed=seed, nproc=nproc),
        assignments or [], recipe=recipe)
    run_id, result = _train(config, runs_dir(runs), data_dir(data), quiet)
    _print_result(run_id, result, json_out)


def _train(config: Any, runs_path: Path, data_path: Path, quiet: bool,
           also: Any = None) -> tuple[str, dict]:
    """`also`: a second listener of the run's events (the demo's stage and ETA lines)."""
    from lab.launch.run import start_run
    from lab.views.progress import ProgressPrinter

    created: list[Any] = []
    with ProgressPrinter(err, config.label, quiet=quiet) as progress, SignalStop() as stop:
        def emit(event: dict) -> None:
            progress(event)
            if also is not None:
                also(event)

        try:
            run_dir, result = start_run(config, runs_path, data_path, emit=emit,
                                        on_created=created.append, should_stop=stop,
                                        progress="quiet" if quiet else "auto")
        except KeyboardInterrupt as exc:
            if created:
                _interrupted(created[0].id, exc)
            raise typer.Exit(130) from None
    return run_dir.id, result


def _interrupted(run_id: str, exc: KeyboardInterrupt) -> None:
    from lab.core.stopping import Stopped

    saved = "checkpoint saved; " if isinstance(exc, Stopped) else ""
    err.print(f"interrupted: {saved}resume with `lab resume {run_id}`")


def _print_result(run_id: str, result: dict, json_out: bool) -> None:
    if os.environ.get("RANK", "0") != "0":
        return  # one rank of the user's torchrun: rank 0 prints
    if json_out:
        print_json(result)
        return
    out.print(f"run {run_id}: test accuracy [bold]{100 * result['test_acc']:.2f}%[/] "
              f"({result['timings']['total_seconds']:.0f}s; details: lab show {run_id})")


def resume(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id, prefix or 'latest'.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Resume even if config.json was edited since the checkpoint in a field "
        "that changes training: config.json wins, and status.json records the change "
        "(config_forced).")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
) -> None:
    """Continue an interrupted run from its last checkpoint, with the config it was trained
    with (a config.json edited since is refused unless --force)."""
    from lab.launch.run import resume_run
    from lab.runs import resolve_run
    from lab.views.progress import ProgressPrinter

    run_dir = resolve_run(runs_dir(runs), run_ref)
    config = run_dir.config()
    with ProgressPrinter(err, config.label, quiet=quiet) as progress, SignalStop() as stop:
        try:
            result = resume_run(run_dir, data_dir(data), emit=progress, should_stop=stop,
                                progress="quiet" if quiet else "auto", force=force)
        except KeyboardInterrupt as exc:
            _interrupted(run_dir.id, exc)
            raise typer.Exit(130) from None
    _print_result(run_dir.id, result, json_out)


def demo(
    epochs: Annotated[int | None, typer.Option(
        help="Epochs per level (default: the demo's, 1 for the ResNet18 levels and 3 for "
             "Level 3).", show_default=False)] = None,
    image_size: Annotated[int, typer.Option(help="Input side in pixels.")] = 32,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    runs: RunsDirOpt = None,
    data: DataDirOpt = None,
) -> None:
    """All three levels on the bundled digits, on the CPU, offline (about a minute on two
    cores); then the comparison. Says what it is doing and how long is left as it goes."""
    from lab.cli.render import comparison_table
    from lab.core.models import weights_cache_path
    from lab.levels import demo_configs
    from lab.views.compare import comparison
    from lab.views.demo import DemoProgress, LevelPlan

    have_imagenet = weights_cache_path().exists()
    if not have_imagenet and not quiet:
        err.print(f"ImageNet weights are not cached ({weights_cache_path()}): the demo trains "
                  "the ResNet18 levels from scratch (weights=none), as recorded in each run.")
    runs_path, data_path = runs_dir(runs), data_dir(data)
    configs = demo_configs(have_imagenet, epochs=epochs, image_size=image_size)
    plan = [LevelPlan(c.label, _demo_title(c), c.model, c.epochs) for c in configs]
    tracker = DemoProgress(plan, say=lambda text: err.print(text, markup=False, highlight=False,
                                                            soft_wrap=True))
    results = []
    for i, config in enumerate(configs):
        listener = None if quiet else tracker.level(i)
        run_id, result = _train(config, runs_path, data_path, quiet, also=listener)
        if not json_out:
            _print_result(run_id, result, json_out=False)
        results.append(result)
    rows = comparison(runs_path, [r["run_id"] for r in results])
    if json_out:
        print_json({"runs": results, "comparison": rows})
    else:
        out.print(comparison_table(rows, title="Demo: the three levels",
                                   width=out.width))


def _demo_title(config: Any) -> str:
    if config.model == "resnet18":
        weights = "ImageNet weights" if config.weights == "imagenet" else "from scratch"
        return f"Level {config.level}, ResNet18 {weights}, {config.image_size} px"
    return f"Level {config.level}, custom CNN, {config.image_size} px"
