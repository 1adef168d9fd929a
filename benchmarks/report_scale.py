"""Size, load time and threshold-update time of the model-testing page for a large test set.

    python benchmarks/report_scale.py [--test 1000] [--updates 20] [--json FILE]

Writes a brick dataset with --test test images (half normal, half defective, masks), trains the
default model on 200 normal images (no exports; the report runs through torch here, which does not
change the page), writes the report with `vadblocks report`, then opens it in headless Chromium
(Debian's /usr/bin/chromium through Playwright): load time is from navigation to the page's ready
flag (all data parsed, list and charts drawn), update time is the page's own measure of one threshold
change (labels, counts, ROC point, histograms, per-defect table, redrawn sample), median of --updates,
and, separately, the time from the input event to the second animation frame after it (layout and paint).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ARGS = [
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--no-sandbox",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from click.testing import CliRunner
    from playwright.sync_api import sync_playwright

    from framework.cli import cli
    from framework.demo_data import make_texture_dataset

    work = Path(tempfile.mkdtemp())
    paths = make_texture_dataset(
        work, "brick", n_train=200, n_test_good=a.test // 2, n_test_defect=a.test - a.test // 2
    )
    runner = CliRunner()
    for args in (
        [
            "train",
            "--data-directory",
            str(paths["edge-impulse"]),
            "--out-directory",
            str(work / "m"),
            "--quiet",
            "--export",
            "none",
        ],
        [
            "report",
            "--model-directory",
            str(work / "m"),
            "--data-directory",
            str(paths["folder"]),
            "--out",
            str(work / "report.html"),
        ],
    ):
        r = runner.invoke(cli, args, catch_exceptions=False)
        if r.exit_code:
            raise SystemExit(r.output)
    report = work / "report.html"
    res = {"test_images": a.test, "bytes": report.stat().st_size}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        loads = []
        for _ in range(3):
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            t0 = time.perf_counter()
            page.goto(report.as_uri())
            page.wait_for_function("window.__report && window.__report.ready", polling=10)
            loads.append(time.perf_counter() - t0)
            if len(loads) < 3:
                page.close()
        scores = page.evaluate(
            "() => JSON.parse(document.getElementById('report-data').textContent)"
            ".samples.map((s) => s.score).sort((a, b) => a - b)"
        )
        updates, painted = [], []
        for i in range(a.updates):
            page.fill("#threshold-input", repr(scores[(i * 37) % len(scores)]))
            page.press("#threshold-input", "Enter")
            updates.append(page.evaluate("window.__report.lastUpdateMs"))
            # the same change from the input event to the next painted frame
            painted.append(
                page.evaluate(
                    """(v) => new Promise((done) => {
                const input = document.getElementById('threshold-input'), t0 = performance.now();
                input.value = String(v);
                input.dispatchEvent(new Event('input'));
                requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
            })""",
                    scores[(i * 53 + 11) % len(scores)],
                )
            )
        browser.close()
    res.update(
        load_s=statistics.median(loads),
        update_ms=statistics.median(updates),
        update_max_ms=max(updates),
        painted_ms=statistics.median(painted),
        painted_max_ms=max(painted),
    )
    print(
        f"| test images | report MB | load s (median of 3) | threshold update ms (median / max of {a.updates}) "
        "| to the next painted frame ms (median / max) |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| {a.test} | {res['bytes'] / 1e6:.2f} | {res['load_s']:.2f} | {res['update_ms']:.1f} / "
        f"{res['update_max_ms']:.1f} | {res['painted_ms']:.1f} / {res['painted_max_ms']:.1f} |"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
