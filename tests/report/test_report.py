"""The model-testing page, checked in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import invoke

CHROMIUM = os.environ.get("VADBLOCKS_CHROMIUM", "/usr/bin/chromium")
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


@pytest.fixture(scope="module")
def model_dir(small_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "model"
    invoke("train", "--data-directory", small_data["edge-impulse"], "--out-directory", out, "--quiet")
    return out


@pytest.fixture(scope="module")
def report_file(model_dir, small_data) -> Path:
    out = model_dir.parent / "report.html"
    text = invoke(
        "report", "--model-directory", model_dir, "--data-directory", small_data["folder"], "--out", out
    ).output
    assert "Report written to" in text and out.is_file()
    return out


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run provisions it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, report_file):
    """The report opened by file URL; every request and console error is recorded."""
    pg = browser.new_page(viewport={"width": 1280, "height": 1000})
    pg.requests, pg.errors = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.goto(report_file.as_uri())
    pg.wait_for_function("window.__report && window.__report.ready")
    yield pg
    pg.close()


def cli_test(model_dir: Path, data: Path, threshold: float) -> dict:
    return json.loads(
        invoke(
            "test", "--model-directory", model_dir, "--data-directory", data, "--json", "--threshold", repr(threshold)
        ).output
    )


def page_metrics(page) -> dict:
    values = page.evaluate("""() => Object.fromEntries(['f1', 'tp', 'fp', 'tn', 'fn'].map(
        (k) => [k, document.getElementById(k).dataset.value]))""")
    return {
        "f1": None if values["f1"] == "null" else float(values["f1"]),
        "counts": {k: int(values[k]) for k in ("tp", "fp", "tn", "fn")},
    }


def set_threshold(page, value: float) -> None:
    page.fill("#threshold-input", repr(value))
    page.press("#threshold-input", "Enter")


def predictions(model_dir: Path, paths: list[Path]) -> dict[str, dict]:
    out = invoke("predict", "--model-directory", model_dir, *paths, "--json").output
    return {Path(r["path"]).relative_to(paths[0].parents[2]).as_posix(): r for r in map(json.loads, out.splitlines())}


def test_threshold_changes_give_the_clis_numbers(page, model_dir, small_data):
    data = small_data["folder"]
    suggested = json.loads((model_dir / "anomaly_metadata.json").read_text())["nominalThresholdScore"]
    assert float(page.input_value("#threshold-input")) == pytest.approx(suggested)
    scores = sorted(
        page.evaluate(
            "() => JSON.parse(document.getElementById('report-data').textContent).samples.map((s) => s.score)"
        )
    )
    seen = set()
    for t in (suggested, scores[2], scores[len(scores) // 2], scores[-3] + 1e-6, scores[-1] + 1.0):
        set_threshold(page, t)
        got, want = page_metrics(page), cli_test(model_dir, data, t)
        assert got["counts"] == want["counts"], t
        assert (got["f1"] is None and want["f1"] is None) or got["f1"] == pytest.approx(want["f1"], abs=1e-12)
        seen.add(tuple(want["counts"].values()))
    assert len(seen) >= 3  # the thresholds really moved the counts
    # the slider, moved with the keyboard as a person would
    set_threshold(page, scores[len(scores) // 2])
    page.focus("#threshold-slider")
    for _ in range(40):
        page.keyboard.press("ArrowRight")
    t = float(page.input_value("#threshold-input"))
    assert t > scores[len(scores) // 2]
    assert page_metrics(page)["counts"] == cli_test(model_dir, data, t)["counts"]
    page.click("#threshold-reset")
    assert float(page.input_value("#threshold-input")) == pytest.approx(suggested)
    assert page.evaluate("window.__report.lastUpdateMs") < 100


def select_sample(page, name: str) -> None:
    page.select_option("#filter", "all")
    page.click(f"#samples tbody tr:has(td:text-is('{name}'))")
    assert page.text_content("#view-title") == name


def cell_centre(page, row: int, col: int, grid: tuple[int, int]) -> dict:
    box = page.locator("#cell-canvas").bounding_box()
    return {"x": (col + 0.5) * box["width"] / grid[1], "y": (row + 0.5) * box["height"] / grid[0]}


def test_hover_on_an_anomalous_cell_shows_its_score(page, model_dir, small_data):
    paths = sorted((small_data["folder"] / "test").glob("*/*.png"))
    preds = predictions(model_dir, paths)
    name, rec = max(preds.items(), key=lambda kv: kv[1]["score"])
    grid = np.asarray(rec["grid"])
    r, c = np.unravel_index(np.argmax(grid), grid.shape)
    select_sample(page, name)
    page.hover("#cell-canvas", position=cell_centre(page, r, c, grid.shape))
    tip = page.locator("#tooltip")
    assert tip.is_visible()
    assert tip.text_content().startswith(f"cell ({r}, {c}): {grid[r, c]:.4f}")
    assert float(tip.get_attribute("data-value")) == pytest.approx(grid[r, c], rel=1e-5)


def test_outlined_cells_are_the_cells_above_the_threshold(page, model_dir, small_data):
    paths = sorted((small_data["folder"] / "test").glob("*/*.png"))
    preds = predictions(model_dir, paths)
    name = sorted(n for n in preds if not n.startswith("test/good"))[0]
    grid = np.asarray(preds[name]["grid"])
    select_sample(page, name)
    for t in (float(np.quantile(grid, 0.8)), float(np.quantile(grid, 0.3))):
        set_threshold(page, t)
        drawn = page.get_attribute("#cell-canvas", "data-outlined").split()
        outlined = {tuple(map(int, rc.split(","))) for rc in drawn}
        assert outlined == {tuple(map(int, rc)) for rc in np.argwhere(grid > t)}
        # and they are drawn: the outline's pixels are white, the same spot of a cell below is not
        gh, gw = grid.shape
        width = page.evaluate("document.getElementById('cell-canvas').width")
        height = page.evaluate("document.getElementById('cell-canvas').height")
        page.uncheck("#show-mask")
        for r, c in [tuple(map(int, rc)) for rc in np.argwhere(grid > t)][:3] + [
            tuple(map(int, rc)) for rc in np.argwhere(grid <= t)
        ][:3]:
            x = round((c + 0.5) * width / gw)
            y = round(r * height / gh) + 1  # on the top edge of the cell's outline (2 px wide)
            px = page.evaluate(
                "([x, y]) => Array.from(document.getElementById('cell-canvas').getContext('2d')"
                ".getImageData(x, y, 1, 1).data)",
                [x, y],
            )
            assert (min(px[:3]) >= 250) == bool(grid[r, c] > t), (r, c, px)
        page.check("#show-mask")


def test_toggles_redraw_the_view(page, small_data):
    select_sample(
        page,
        "test/scratch/000.png"
        if (small_data["folder"] / "test/scratch/000.png").exists()
        else page.text_content("#samples tbody tr:nth-child(1) td:nth-child(2)"),
    )
    snap = "() => document.getElementById('cell-canvas').toDataURL()"
    with_all = page.evaluate(snap)
    page.uncheck("#show-grid")
    without_grid = page.evaluate(snap)
    page.uncheck("#show-mask")
    without_mask = page.evaluate(snap)
    assert len({with_all, without_grid, without_mask}) == 3
    page.check("#show-grid")
    page.check("#show-mask")


def test_list_filters_and_sorts(page):
    page.select_option("#filter", "anomaly")
    visible = page.locator("#samples tbody tr:visible")
    assert visible.count() == 8
    assert all(t == "anomaly" for t in visible.locator("td:nth-child(3)").all_text_contents())
    page.select_option("#filter", "all")
    page.select_option("#sort", "score-asc")
    scores = [float(s) for s in page.locator("#samples tbody tr td:nth-child(6)").all_text_contents()]
    assert scores == sorted(scores) and len(scores) == 16
    page.select_option("#sort", "score-desc")


def test_no_network_no_console_errors_and_a_screenshot(page, report_file, tmp_path_factory):
    page.hover("#cell-canvas", position={"x": 150, "y": 150})
    shot = tmp_path_factory.mktemp("screens") / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert page.errors == []
    assert [u for u in page.requests if not u.startswith(("file:", "data:"))] == []
    assert page.requests[0] == report_file.as_uri()


def test_test_command_writes_report_and_plots(model_dir, small_data, tmp_path):
    out = invoke(
        "test",
        "--model-directory",
        model_dir,
        "--data-directory",
        small_data["folder"],
        "--report",
        tmp_path / "r.html",
        "--plots",
        tmp_path / "plots",
    ).output
    assert "report:" in out and "plots:" in out
    assert (tmp_path / "r.html").stat().st_size > 10_000
    for name in ("roc.png", "scores.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"
