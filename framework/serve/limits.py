"""What one ``vadblocks serve`` process accepts at once, and the memory that holds it to
(stdlib only: the command line reads the defaults without loading the server)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from framework.errors import VadblocksError

MAX_BODY_BYTES = 100 * 1000 * 1000  # the runner's multer limit (100 MB)
MAX_PIXELS = 50_000_000  # a generous camera frame; larger uploads are refused from their header
LINGER_S = 2.0  # how long a refused upload may keep sending before its connection is closed
DECODED_BYTES_PER_PIXEL = 8  # Pillow holds 4 bytes per decoded pixel, and 4 more for the RGB copy of non-RGB images


@dataclass(frozen=True)
class Limits:
    """What one ``vadblocks serve`` process accepts at once (docs/contract.md lists them with the answers)."""

    max_pixels: int = MAX_PIXELS
    max_body_bytes: int = MAX_BODY_BYTES
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    queue: int = -1  # requests waiting for a worker; -1: as many as there are workers
    max_connections: int = 1024
    body_budget_bytes: int = 256 << 20  # request bodies held at once (each reserves twice its length)
    header_timeout_s: float = 10.0  # for a request's line and headers, and for the next request on a kept connection
    body_rate_bytes_s: int = 1 << 20  # a body must arrive at this average rate (after header_timeout_s of grace)
    max_header_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_body_bytes", "workers", "max_connections", "body_budget_bytes"):
            if getattr(self, name) < 1:
                raise VadblocksError(f"serve: {name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.queue < 0:
            object.__setattr__(self, "queue", self.workers)
        if 2 * self.max_body_bytes > self.body_budget_bytes:
            object.__setattr__(self, "body_budget_bytes", 2 * self.max_body_bytes)


def memory_bound(limits: Limits, base_bytes: int) -> int:
    """The most memory ``vadblocks serve`` holds, given what the loaded model already takes (``base_bytes``):
    each worker's largest accepted decode, the body budget, each connection's header buffer, and
    64 MiB for the interpreter's allocator, thread stacks and answers."""
    return (
        base_bytes
        + limits.workers * limits.max_pixels * DECODED_BYTES_PER_PIXEL
        + limits.body_budget_bytes
        + limits.max_connections * 2 * limits.max_header_bytes
        + (64 << 20)
    )
