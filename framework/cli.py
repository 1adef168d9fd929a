"""The ``vadblocks`` command line: a thin layer over the library."""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path
from typing import Any

import click

from framework import __version__
from framework.errors import Interrupted, VadblocksError
from framework.portable.formats import EXPORT_FILES, RUNTIMES
from framework.serve.limits import MAX_PIXELS
from framework.tune.targets import TARGET_NAMES

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
EXTRA_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True, **CONTEXT}


class Group(click.Group):
    """Turns :class:`VadblocksError` into one clear message and exit status 2, and an interruption
    (Ctrl-C, SIGTERM, SIGHUP; partial outputs already removed) into one message and 128 + the signal."""

    def invoke(self, ctx: click.Context) -> Any:
        from framework import interrupts

        try:
            return super().invoke(ctx)
        except VadblocksError as exc:
            if interrupts.pending() is None:
                click.echo(f"Error: {exc}", err=True)
                ctx.exit(2)
            signum = interrupts.pending()  # e.g. a converter turned the interruption into its own error
        except (KeyboardInterrupt, Interrupted) as exc:
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        click.echo(
            f"Error: interrupted by {signal.Signals(signum).name}; stopped without leaving partial output", err=True
        )
        ctx.exit(128 + int(signum))


class PluginParamsCommand(click.Command):
    """A command whose options include every installed plugin's parameters (loaded lazily)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_plugin_params_added", False):
            self._plugin_params_added = True
            try:
                from framework.config import all_params
                from framework.plugins import get_registry

                for p, cond in all_params(get_registry()):
                    where = f" [{cond['value']} only]" if cond else ""
                    self.params.append(
                        click.Option(
                            [f"--{p.name}", p.attr],
                            default=None,
                            is_flag=p.type == "flag",
                            flag_value="1" if p.type == "flag" else None,
                            help=f"{p.help}{where} ({p.describe_valid()}; default {p.default})",
                        )
                    )
            except VadblocksError:
                pass  # reported when the command runs and resolves its parameters
        return super().get_params(ctx)


def _warn_extra(ctx: click.Context) -> None:
    if ctx.args:
        click.echo(f"Warning: ignoring unknown arguments: {' '.join(ctx.args)}", err=True)


def _plugin_values(kwargs: dict[str, Any]) -> dict[str, Any]:
    from framework.config import all_params
    from framework.plugins import get_registry

    names = {p.attr for p, _ in all_params(get_registry())}
    return {k: v for k, v in kwargs.items() if k in names and v is not None}


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A click callback refusing NaN and infinite numbers (``--threshold nan``)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj))


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="vadblocks")
def cli() -> None:
    """Visual anomaly detection learning blocks (Edge Impulse custom learning block contract)."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plugins(as_json: bool) -> None:
    """List installed backbones and scorers, where they come from, and plugins that failed."""
    from framework.plugins import get_registry

    data = get_registry().describe()
    if as_json:
        _echo_json(data)
        return
    for kind in ("backbones", "scorers"):
        click.echo(f"{kind}:")
        for d in data[kind]:
            extra = ""
            if kind == "backbones":
                extra = (
                    " [pretrained weights offline]"
                    if d["offline_weights"]
                    else " [no offline weights: download or --weights]"
                )
            click.echo(f"  {d['name']:<20} {d['distribution']} {d['version']}{extra}")
            click.echo(f"  {'':<20} {d['description']}")
    if data["failed"]:
        click.echo("failed:")
        for f in data["failed"]:
            click.echo(f"  {f['plugin']} ({f['distribution']}): {f['reason']}")


@cli.command()
def params() -> None:
    """Print the block's parameters.json, generated from the installed plugins."""
    from framework.config import dumps_parameters_json
    from framework.plugins import get_registry

    click.echo(dumps_parameters_json(get_registry()), nl=False)


def data_options(f: Any) -> Any:
    """Options describing how to read a data directory."""
    for opt in reversed(
        [
            click.option(
                "--data-directory",
                required=True,
                type=click.Path(path_type=Path),
                help="Edge Impulse data directory (X_split_*.npy) or folder layout (train/good, test/...).",
            ),
            click.option(
                "--info-file",
                "--input-file",
                "info_file",
                type=click.Path(path_type=Path),
                default=None,
                help="Edge Impulse train_input.json (input shape, classes, scaling).",
            ),
            click.option("--input-shape", default=None, help="Shape of flattened X rows, e.g. 96,96,3."),
            click.option(
                "--input-scaling", default=None, help="Scaling of X values: 0..1 (default), 0..255, -1..1 or -128..127."
            ),
        ]
    ):
        f = opt(f)
    return f


@cli.command(cls=PluginParamsCommand, context_settings=EXTRA_ARGS)
@data_options
@click.option(
    "--out-directory",
    required=True,
    type=click.Path(path_type=Path),
    help="Where the model files are written (atomically).",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=0),
    default=None,
    help="Resize images to SIZE x SIZE (folder layouts default to 96; 0 keeps the files' own size, "
    "which must then be the same for all).",
)
@click.option(
    "--weights",
    default=None,
    help="Backbone weights file (.pt/.pth state dict or .npz) to use instead of the default source.",
)
@click.option(
    "--export",
    "export",
    default="onnx,tflite,tflite-int8",
    envvar="VADBLOCKS_EXPORT",
    show_default=True,
    help="Model files to write: comma-separated onnx, tflite, tflite-int8, or none (env VADBLOCKS_EXPORT).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def train(
    ctx: click.Context,
    data_directory: Path,
    info_file: Path | None,
    input_shape: str | None,
    input_scaling: str | None,
    out_directory: Path,
    image_size: int | None,
    weights: str | None,
    export: str,
    quiet: bool,
    **plugin_kwargs: Any,
) -> None:
    """Train on the normal images of a data directory and write the model to --out-directory."""
    from framework.config import resolve
    from framework.plugins import get_registry
    from framework.portable.formats import parse_export_list
    from framework.train.job import train_to_directory

    _warn_extra(ctx)
    # Everything the user gave is checked before torch is imported (a refusal takes well under a second).
    registry = get_registry()
    config = resolve(registry, _plugin_values(plugin_kwargs))
    done = train_to_directory(
        data_directory,
        out_directory,
        config,
        registry,
        export=parse_export_list(export),
        info_file=info_file,
        input_shape=input_shape,
        input_scaling=input_scaling,
        image_size=image_size,
        weights=weights,
        progress=not quiet,
    )
    model, ds, elapsed = done.model, done.dataset, done.seconds
    gh, gw = model.grid_shape
    click.echo(
        f"Trained {config.scorer} on {config.backbone} with {len(ds.train)} normal images "
        f"({ds.image_shape[0]}x{ds.image_shape[1]}) in {elapsed:.1f} s; grid {gh}x{gw}; "
        f"suggested threshold {model.threshold:.4f} ({model.metadata['thresholdPolicy']['how']})"
    )
    from framework.train.validation import estimate_lines

    section = model.metadata["validation"]
    for line in estimate_lines(section) if section.get("source") else [f"validation: {section['reason']}"]:
        click.echo(line[:1].upper() + line[1:])
    click.echo(f"Model written to {out_directory}")


RUNTIME_OPTION = click.option(
    "--runtime",
    default="auto",
    show_default=True,
    type=click.Choice(RUNTIMES),
    help="Run the model with torch or through one of its exported files, in this "
    "process; auto = model.tflite (LiteRT), else model.onnx (ONNX Runtime), "
    "else torch: the exported graph is 2-3x faster at one thread.",
)


@cli.command(name="test")
@click.option("--model-directory", required=True, type=click.Path(path_type=Path))
@data_options
@click.option(
    "--threshold", type=float, default=None, callback=_finite, help="Override the model's suggested threshold."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the interactive model-testing page (one self-contained HTML file).",
)
@click.option(
    "--plots",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write roc.png and scores.png (score distributions) into this folder.",
)
@RUNTIME_OPTION
def test_cmd(
    model_directory: Path,
    data_directory: Path,
    info_file: Path | None,
    input_shape: str | None,
    input_scaling: str | None,
    threshold: float | None,
    as_json: bool,
    report: Path | None,
    plots: Path | None,
    runtime: str,
) -> None:
    """Test a model on the test split: F1 at the threshold, image AUROC, pixel AUROC (with masks)."""
    from framework.serve.testing import test_model

    run = test_model(
        model_directory,
        data_directory,
        runtime=runtime,
        info_file=info_file,
        input_shape=input_shape,
        input_scaling=input_scaling,
    )
    result = run.evaluate(threshold)
    extra = []
    if report is not None:
        from framework.report.page import write_test_report

        extra.append(f"report: {write_test_report(report, run, threshold)}")
    if plots is not None:
        from framework.report.plots import write_plots

        paths = write_plots(
            plots, run.split, run.scores, result["threshold"], run.meta.get("trainScores"), result["image_auroc"]
        )
        extra.append("plots: " + ", ".join(str(p) for p in paths))
    if as_json:
        _echo_json(result)
        for line in extra:
            click.echo(line, err=True)
        return

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    c = result["counts"]
    which = "suggested" if threshold is None else "given"
    click.echo(f"images: {result['n_images']}  threshold: {result['threshold']:.4f} ({which})")
    best = (
        ""
        if result["best_f1"] is None
        else f" (best F1 on this set: {result['best_f1']:.4f} at threshold {result['best_threshold']:.4f})"
    )
    click.echo(
        f"F1 at the {which} threshold: {fmt(result['f1'])}  false positive rate: {fmt(result['fpr'])}  "
        f"recall: {fmt(result['recall'])}{best}"
    )
    click.echo(f"image AUROC: {fmt(result['image_auroc'])}  pixel AUROC: {fmt(result['pixel_auroc'])}")
    click.echo(f"tp {c['tp']}  fp {c['fp']}  tn {c['tn']}  fn {c['fn']}")
    for line in extra:
        click.echo(line)


@cli.command()
@click.option("--model-directory", required=True, type=click.Path(path_type=Path))
@data_options
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="The HTML file to write.")
@click.option(
    "--threshold",
    type=float,
    default=None,
    callback=_finite,
    help="Open the page at this threshold (default: suggested).",
)
@RUNTIME_OPTION
def report(
    model_directory: Path,
    data_directory: Path,
    info_file: Path | None,
    input_shape: str | None,
    input_scaling: str | None,
    out: Path,
    threshold: float | None,
    runtime: str,
) -> None:
    """Write the interactive model-testing page: samples, grids, threshold, ROC, distributions, metadata."""
    from framework.report.page import write_test_report
    from framework.serve.testing import test_model

    run = test_model(
        model_directory,
        data_directory,
        runtime=runtime,
        info_file=info_file,
        input_shape=input_shape,
        input_scaling=input_scaling,
    )
    path = write_test_report(out, run, threshold)
    click.echo(
        f"Report written to {path} ({path.stat().st_size / 1e6:.2f} MB, {len(run.split)} test images); "
        "open it in a browser"
    )


@cli.command()
@click.option("--model-directory", required=True, type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line.")
@click.option(
    "--heatmaps",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a heatmap overlay PNG per image into this folder.",
)
@click.option(
    "--threshold", type=float, default=None, callback=_finite, help="Override the model's suggested threshold."
)
@RUNTIME_OPTION
def predict(
    model_directory: Path,
    images: tuple[Path, ...],
    as_json: bool,
    heatmaps: Path | None,
    threshold: float | None,
    runtime: str,
) -> None:
    """Score images: per-cell grid, image score and verdict (and heatmaps with --heatmaps)."""
    from vadblocks import predict_files

    for row in predict_files(model_directory, images, runtime=runtime, threshold=threshold, heatmaps=heatmaps):
        if as_json:
            _echo_json({k: row[k] for k in ("path", "score", "anomalous", "grid")})
        else:
            heat = f" (heatmap {row['heatmap']})" if "heatmap" in row else ""
            click.echo(
                f"{row['path']}: score {row['score']:.4f} -> {'ANOMALY' if row['anomalous'] else 'no anomaly'}{heat}"
            )


@cli.command()
@click.option("--model-directory", required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="The .eim file to write.")
@click.option(
    "--runtime",
    default="tflite",
    show_default=True,
    type=click.Choice(tuple(EXPORT_FILES)),
    help="Model file packed: model.tflite (LiteRT), model_quantized_int8_io.tflite or model.onnx (ONNX Runtime).",
)
@click.option(
    "--python",
    "interpreter",
    default="/usr/bin/env python3",
    show_default=True,
    help="The interpreter of the file's #! line (needs numpy and the runtime's package).",
)
@click.option(
    "--standalone",
    is_flag=True,
    help="A self-contained executable for this machine's architecture (Python, numpy and the runtime inside, "
    "about 50 MB; built with PyInstaller): the target needs nothing installed.",
)
def eim(model_directory: Path, out: Path, runtime: str, interpreter: str, standalone: bool) -> None:
    """Pack a model into an .eim executable for Edge Impulse's Linux SDKs and edge-impulse-linux-runner."""
    from framework.serve.eim import write_eim, write_standalone_eim

    if standalone:
        path = write_standalone_eim(model_directory, out, runtime)
        needs = "nothing installed on a Linux machine of this architecture"
    else:
        path = write_eim(model_directory, out, runtime, interpreter)
        needs = f"Python 3 with numpy and {'onnxruntime' if runtime == 'onnx' else 'ai-edge-litert'}"
    click.echo(
        f"Wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {runtime}); run it as `{path} SOCKET_PATH` "
        f"or give it to an Edge Impulse Linux SDK (needs {needs})"
    )


@cli.command(name="export")
@click.option("--model-directory", required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder for the C++ sources.")
@click.option(
    "--runtime",
    default="tflite-int8",
    show_default=True,
    type=click.Choice(("tflite-int8", "tflite")),
    help="The file to embed (int8 for microcontrollers).",
)
def export_cmd(model_directory: Path, out: Path, runtime: str) -> None:
    """Write C++ sources for TensorFlow Lite Micro: model_data.h/.cc (the file as an array, its arena, grid and
    threshold) and an example main.cc that runs one image through TFLM's MicroInterpreter."""
    from framework.serve.cpp import write_cpp

    done = write_cpp(model_directory, out, runtime)
    click.echo(
        f"Wrote {', '.join(p.name for p in done.paths)} to {out}: {done.model_bytes:,} bytes of model (flash), "
        f"TFLM arena {done.arena_bytes:,} bytes (RAM), {len(done.operators)} operators"
    )


@cli.command()
@click.option("--model-directory", required=True, type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=1337, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for all).")
@click.option("--runtime", default="tflite", show_default=True, type=click.Choice(tuple(EXPORT_FILES)))
@click.option(
    "--max-pixels",
    type=click.IntRange(1),
    default=MAX_PIXELS,
    show_default=True,
    help="Uploads with more pixels are refused (413) from their header, before decoding.",
)
@click.option(
    "--workers", type=click.IntRange(1), default=None, help="Requests decoded and classified at once [default: CPUs]."
)
@click.option(
    "--queue",
    type=click.IntRange(0),
    default=None,
    help="Requests waiting for a worker; beyond: 503 [default: workers].",
)
@click.option("--max-connections", type=click.IntRange(1), default=1024, show_default=True, help="Open connections.")
def serve(
    model_directory: Path,
    port: int,
    host: str,
    runtime: str,
    max_pixels: int,
    workers: int | None,
    queue: int | None,
    max_connections: int,
) -> None:
    """Serve a model with edge-impulse-linux-runner's HTTP API (/api/info, /api/image, /api/features).

    Bounded for hostile clients: pixels per upload, workers and queue (then 503), open connections,
    header and body deadlines; the memory bound these give is printed at start (docs/contract.md)."""
    from framework.portable.impulse import ExportedModel
    from framework.serve.http import Limits, make_server

    limits = Limits(
        max_pixels=max_pixels,
        max_connections=max_connections,
        **({"workers": workers} if workers else {}),
        **({"queue": queue} if queue is not None else {}),
    )
    server = make_server(ExportedModel.from_directory(str(model_directory), runtime), host, port, limits)
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"Serving {model_directory} ({runtime}) on http://{bound_host}:{bound_port} (Ctrl-C to stop)")
    mib = 1 << 20
    click.echo(
        f"Limits: {limits.workers} workers, {limits.queue} queued, {limits.max_connections} connections, "
        f"{limits.max_pixels:,} pixels and {limits.max_body_bytes:,} bytes per upload; "
        f"memory bound {server.memory_bound / mib:.0f} MiB (loaded model {server.base_bytes / mib:.0f} MiB)"
    )
    sys.stdout.flush()
    server.serve_forever()


@cli.command()
@click.argument("block_dir", default=".", type=click.Path(path_type=Path))
@click.option("--tag", default=None, help="Image tag (default: derived from the block's name).")
@click.option(
    "--build-arg",
    "build_arg",
    multiple=True,
    help="KEY=VALUE passed to docker build (repeatable), e.g. BASE_IMAGE=... or PIP_INDEX_URL=...",
)
@click.option(
    "--build-args-file",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    envvar="VADBLOCKS_BUILD_ARGS_FILE",
    help="File of KEY=VALUE lines (env VADBLOCKS_BUILD_ARGS_FILE).",
)
@click.option("--quiet", is_flag=True, help="Do not stream the build log.")
def build(
    block_dir: Path, tag: str | None, build_arg: tuple[str, ...], build_args_file: tuple[Path, ...], quiet: bool
) -> None:
    """Build a learning block's Docker image (default: the flagship block in this folder)."""
    from framework.container import runner

    args = runner.read_build_args(build_arg, build_args_file)
    tag = runner.build(block_dir, tag, args, log=(lambda line: None) if quiet else click.echo)
    click.echo(f"Built {tag}")


@cli.command(cls=PluginParamsCommand, context_settings=EXTRA_ARGS)
@data_options
@click.option(
    "--out-directory",
    required=True,
    type=click.Path(path_type=Path),
    help="Where the study database (tune.db), leaderboard.json, pareto.png and the best model/ go.",
)
@click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="Trials the study should hold in all (a resumed study or other workers count too).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Start no new trial after this many seconds.",
)
@click.option(
    "--runtime",
    type=click.Choice(tuple(EXPORT_FILES)),
    default=None,
    help="Exported file whose latency, size and memory are measured (default: the target's, else tflite).",
)
@click.option("--max-latency-ms", type=float, default=None, callback=_finite, help="Latency budget (ms, one image).")
@click.option("--max-model-kb", type=float, default=None, callback=_finite, help="Model file budget (KB).")
@click.option("--max-ram-kb", type=float, default=None, callback=_finite, help="Peak activation memory budget (KB).")
@click.option(
    "--target",
    type=click.Choice([*TARGET_NAMES, "none"]),
    default="high-power",
    show_default=True,
    help="Budget preset (explicit limits win): low-power = int8 TFLite, 1 ms, 300 KB "
    "file, 512 KB TFLM arena, starting from GMM; boards cortex-m4f (256 KB RAM, 1 MB flash), esp32-s3 "
    "(512 KB, 8 MB), cortex-m7 (1 MB, 2 MB) = the int8 file under TFLM within the board's RAM and flash; "
    "high-power = float TFLite, 3 ms, 8 MB, 32 MB, starting from PatchCore; none = no limits but the explicit ones.",
)
@click.option(
    "--storage",
    default=None,
    help="Study database URL shared by workers, e.g. "
    "postgresql+psycopg://user:pass@host/db (default: sqlite in --out-directory).",
)
@click.option("--study", "study", default="vadblocks", show_default=True, help="Study name in the storage.")
@click.option(
    "--accuracy",
    type=click.Choice(["auto", "synthetic", "labelled"]),
    default="auto",
    show_default=True,
    help="What a trial's accuracy is: synthetic anomalies on held-out normal images, or the labelled "
    "test split (auto: labelled when the test split has both classes).",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=8),
    default=None,
    help="Fix the image size (default: searched from 96 up to the images' own size, max 320).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler seed.")
@click.option(
    "--export",
    "export",
    default="onnx,tflite,tflite-int8",
    show_default=True,
    help="Model files of the best model: comma-separated onnx, tflite, tflite-int8, or none.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (best, trials, model_directory).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def tune(
    ctx: click.Context,
    data_directory: Path,
    info_file: Path | None,
    input_shape: str | None,
    input_scaling: str | None,
    out_directory: Path,
    n_trials: int,
    timeout: float | None,
    runtime: str | None,
    max_latency_ms: float | None,
    max_model_kb: float | None,
    max_ram_kb: float | None,
    target: str | None,
    storage: str | None,
    study: str,
    accuracy: str,
    image_size: int | None,
    seed: int,
    export: str,
    as_json: bool,
    quiet: bool,
    **plugin_kwargs: Any,
) -> None:
    """Search configurations for this data and a device budget; --<param> VALUE fixes a parameter.

    Trials are judged without labelled anomalies (unless the test split has them), measured on the
    exported file, and kept in a study database that resumes and that several workers can share.
    """
    from framework.plugins import get_registry
    from framework.portable.formats import parse_export_list
    from framework.tune import tuner as tuning

    _warn_extra(ctx)
    opts = tuning.TuneOptions(
        n_trials=n_trials,
        timeout=timeout,
        runtime=runtime,
        target=target,
        storage=storage,
        study=study,
        budget=tuning.Budget(max_latency_ms, max_model_kb, max_ram_kb),
        accuracy=accuracy,
        seed=seed,
        export=parse_export_list(export),
        fixed=_plugin_values(plugin_kwargs),
        image_size=image_size,
        progress=not quiet,
    )
    data = tuning.DataSource(data_directory, input_shape=input_shape, scaling=input_scaling, info_file=info_file)
    log = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    result = tuning.Tuner(data, out_directory, opts, get_registry(), log=log).run()
    if as_json:
        _echo_json(result)
        return
    for line in tuning.table(result["trials"]):
        click.echo(line)
    best = result["best"]
    click.echo(
        f"Best: trial {best['number']} (image AUROC {best['image_auroc']:.3f}, {best['latency_ms']:.2f} ms, "
        f"{best['model_kb']:.0f} KB, {best['ram_kb']:.0f} KB RAM); "
        f"{result['trials_this_worker']} trial(s) here at {result['trials_per_minute']:.1f} per minute"
    )
    click.echo(
        f"Parameters: {best['parameter_line']}"
        + (
            f" (images {best['image_size']}x{best['image_size']}: --image-size {best['image_size']})"
            if image_size is None and len(set(t["image_size"] for t in result["trials"] if t["image_size"])) > 1
            else ""
        )
    )
    click.echo(
        f"Model written to {result['model_directory']}; leaderboard {result['leaderboard']}; "
        f"plot {result['pareto_png']}"
    )


@cli.command(context_settings=EXTRA_ARGS)
@click.argument("block_dir", default=".", type=click.Path(path_type=Path))
@click.option("--data-directory", required=True, type=click.Path(path_type=Path))
@click.option("--out-directory", required=True, type=click.Path(path_type=Path))
@click.option("--tag", default=None, help="Image tag (default: derived from the block's name).")
@click.option("--memory", default=None, help="Memory limit of the container, e.g. 4g (default: none).")
@click.option("--cpus", type=float, default=None, help="CPUs the container may use, e.g. 1.5 (default: all).")
@click.option(
    "--tune",
    "tune_worker",
    is_flag=True,
    help="Run `vadblocks tune` in the block's image instead of "
    "training: the extra arguments are tune's (e.g. --n-trials 20 --storage URL --study NAME).",
)
@click.option(
    "--network",
    default=None,
    help="Docker network of the container (default: none); e.g. host for a tune worker reaching a shared database.",
)
@click.pass_context
def run(
    ctx: click.Context,
    block_dir: Path,
    data_directory: Path,
    out_directory: Path,
    tag: str | None,
    memory: str | None,
    cpus: float | None,
    tune_worker: bool,
    network: str | None,
) -> None:
    """Run a learning block's image like Edge Impulse does; extra --<param> VALUE pairs are its parameters.

    The container runs without network, with a read-only root filesystem (a tmpfs at /tmp), all
    capabilities dropped, no-new-privileges and a process limit, as the calling user.
    """
    from framework.container import runner
    from framework.plugins import get_registry

    doc = runner.read_block(block_dir)
    values = {} if tune_worker else runner.parse_extra_args(doc, list(ctx.args))
    code = runner.run(
        block_dir,
        data_directory,
        out_directory,
        values,
        tag=tag,
        registry=get_registry(),
        memory=memory,
        cpus=cpus,
        log=click.echo,
        network=network,
        tune_args=list(ctx.args) if tune_worker else None,
    )
    if code:
        click.echo(f"Error: the block exited with status {code}", err=True)
    ctx.exit(code)


@cli.command(name="package")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Block folder to write.")
@click.option("--scorer", "scorers", multiple=True, help="Scorer to include (repeatable; default: all installed).")
@click.option(
    "--backbone", "backbones", multiple=True, help="Backbone to include (repeatable; default: all installed)."
)
@click.option(
    "--with",
    "with_",
    multiple=True,
    help="Extra package: a local path (built into a wheel) or a requirement (repeatable).",
)
def package_cmd(out: Path, scorers: tuple[str, ...], backbones: tuple[str, ...], with_: tuple[str, ...]) -> None:
    """Write a custom learning block folder (Dockerfile, parameters.json, wheels) for chosen plugins."""
    from framework.container.package import package
    from framework.plugins import get_registry

    package(out, get_registry(), scorers, backbones, with_, log=lambda m: click.echo(m, err=True))
    click.echo(f"Block folder: {out} (build it with `vadblocks build {out}`)")


@cli.group(name="init")
def init_group() -> None:
    """Scaffold new plugins."""


@init_group.command(name="scorer")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to create vadblocks-NAME/ (default: the current folder).",
)
def init_scorer_cmd(name: str, directory: Path | None) -> None:
    """Create a scorer package vadblocks-NAME that installs with pip and is discovered immediately."""
    from framework.container.scaffold import init_scorer

    path = init_scorer(name, directory)
    click.echo(f"Created {path}: pip install -e {path} && vadblocks plugins")


def main() -> None:
    """Console-script entry point. SIGTERM and SIGHUP unwind like Ctrl-C (also as a container's PID 1)."""
    from framework import interrupts

    interrupts.install()
    cli(prog_name="vadblocks")


if __name__ == "__main__":  # pragma: no cover
    main()
