"""Device budgets and the ``--target`` presets of ``vadblocks tune``: classes of device and named boards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Budget:
    """Device limits a configuration must meet (None = no limit)."""

    max_latency_ms: float | None = None
    max_model_kb: float | None = None
    max_ram_kb: float | None = None

    LIMITS = (
        ("max_latency_ms", "latency_ms", "ms"),
        ("max_model_kb", "model_kb", "KB"),
        ("max_ram_kb", "ram_kb", "KB"),
    )

    def excess(self, measured: dict[str, float]) -> dict[str, float]:
        """Per limit: how far ``measured`` is over it, relative to the limit (<= 0 = within)."""
        return {
            key: measured[key] / limit - 1.0
            for attr, key, _ in self.LIMITS
            if (limit := getattr(self, attr)) is not None
        }

    def broken(self, measured: dict[str, float]) -> list[str]:
        """Human descriptions of the limits ``measured`` breaks."""
        return [
            f"{key.split('_')[0]} {measured[key]:.3g} {unit} > {limit:g} {unit}"
            for attr, key, unit in self.LIMITS
            if (limit := getattr(self, attr)) is not None and measured[key] > limit
        ]

    def describe(self) -> str:
        parts = [
            f"{key.split('_')[0]} <= {getattr(self, attr):g} {unit}"
            for attr, key, unit in self.LIMITS
            if getattr(self, attr) is not None
        ]
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True)
class Target:
    """A ``--target`` preset: a runtime, a budget, the scorer the study starts from, and parameter values it fixes
    (unless given on the command line)."""

    runtime: str
    budget: Budget
    start_scorer: str
    description: str
    fixed: dict[str, str] = field(default_factory=dict)
    # a microcontroller: each trial's file must run under TensorFlow Lite Micro, whose arena is its RAM figure;
    # "required": tune refuses to start without tflite-micro; "if-installed": else the planner's estimate
    micro: Literal["no", "if-installed", "required"] = "no"


def board(name: str, ram_kb: int, flash_kb: int) -> Target:
    """A microcontroller board: the int8 file under TensorFlow Lite Micro, its arena within the board's RAM and
    the file within its flash; every layer int8; starts from GMM."""
    return Target(
        "tflite-int8",
        Budget(max_model_kb=flash_kb, max_ram_kb=ram_kb),
        "gmm",
        f"{name}: {ram_kb} KB RAM for TFLM's arena, {flash_kb} KB flash for the int8 file, every layer int8; "
        "starts from GMM",
        fixed={"int8-precision": "full"},
        micro="required",
    )


TARGETS = {
    # Microcontroller class (e.g. Cortex-M7, ~1 MB flash, ~512 KB SRAM): int8 model, Edge Impulse's GMM default.
    "low-power": Target(
        "tflite-int8",
        Budget(max_latency_ms=1.0, max_model_kb=300, max_ram_kb=512),
        "gmm",
        "microcontroller class: int8 TFLite file, latency <= 1 ms on this machine's LiteRT, "
        "file <= 300 KB, TFLM arena <= 512 KB, every layer int8 (no FPU assumed); "
        "starts from GMM",
        fixed={"int8-precision": "full"},
        micro="if-installed",
    ),
    # Boards by their RAM (the tensor arena must fit) and flash (the model file must fit).
    "cortex-m4f": board("Cortex-M4F board (e.g. nRF52840)", 256, 1024),
    "esp32-s3": board("ESP32-S3 with 8 MB flash", 512, 8192),
    "cortex-m7": board("Cortex-M7 board (e.g. STM32H743)", 1024, 2048),
    # Linux class (Raspberry Pi 4 / Jetson): float TFLite, Edge Impulse's PatchCore default.
    "high-power": Target(
        "tflite",
        Budget(max_latency_ms=3.0, max_model_kb=8192, max_ram_kb=32768),
        "patchcore",
        "Linux class: float TFLite file, latency <= 3 ms on this machine's LiteRT, "
        "file <= 8 MB, activations <= 32 MB; starts from PatchCore",
    ),
}

TARGET_NAMES = tuple(TARGETS)
