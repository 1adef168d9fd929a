"""The runtimes and the exported files they run: declared once, importing nothing but the error class.

Every ``--runtime`` choice (predict, test, report, serve, eim, tune), ``--export``, the .eim and the
metadata read this registry; adding a file format means adding it here and an engine in ``engines.py``.
"""

from __future__ import annotations

from .errors import ServingError

# The one registry of runtimes: every --runtime choice, tune, eim, export and the metadata read it.
# runtime name -> (the exported file it runs, the package that runs it)
FILE_RUNTIMES: dict[str, tuple[str, str]] = {
    "onnx": ("model.onnx", "onnxruntime"),
    "tflite": ("model.tflite", "ai_edge_litert"),
    "tflite-int8": ("model_quantized_int8_io.tflite", "ai_edge_litert"),
    "tflm": ("model_quantized_int8_io.tflite", "tflite_micro"),  # the int8 file under TensorFlow Lite Micro
}
EXPORTS = ("onnx", "tflite", "tflite-int8")  # the files `--export` writes (each named after its first runtime)
EXPORT_FILES = {name: FILE_RUNTIMES[name][0] for name in EXPORTS}
RUNTIME_FILES = {name: file for name, (file, _) in FILE_RUNTIMES.items()}
RUNTIME_PACKAGES = {name: package for name, (_, package) in FILE_RUNTIMES.items()}
AUTO_ORDER = ("tflite", "onnx")  # `--runtime auto`: the first float file whose runtime is installed, fastest first
IN_PROCESS = "torch"  # the model directory's own state, run by torch (no exported file)
RUNTIMES = ("auto", IN_PROCESS, *FILE_RUNTIMES)  # every --runtime choice of predict, test, report and serve


def parse_export_list(text: str) -> tuple[str, ...]:
    """``"onnx,tflite"`` -> ``("onnx", "tflite")``; ``none`` or empty -> ``()``; unknown names are refused."""
    formats = tuple(f.strip() for f in text.split(",") if f.strip() and f.strip() != "none")
    unknown = [f for f in formats if f not in EXPORT_FILES]
    if unknown:
        raise ServingError(f"--export: {', '.join(unknown)} not known; choose from {', '.join(EXPORT_FILES)} or none")
    return formats
