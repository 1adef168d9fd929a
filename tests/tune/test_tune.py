"""`vadblocks tune`: the search space from declarations, shared features, footprint measurement, the study
(outputs, resume, failures, errors) and several workers on one SQLite or PostgreSQL storage."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from framework.config import resolve
from framework.data import load_dataset
from framework.errors import VadblocksError
from framework.params import Param, Search
from framework.serve.footprint import onnx_lifetimes, peak_ram_bytes, plan_arena, tflite_lifetimes
from framework.train.feature_cache import FeatureCache
from framework.train.pipeline import train
from framework.tune.search_space import SearchSpace, distribution, image_sizes
from framework.tune.targets import Budget
from framework.tune.tuner import leaderboard, pareto_front
from tests.helpers import invoke, write_plugin_dist

ROOT = Path(__file__).resolve().parents[2]
# onnx trials export in a fraction of a second; the latency limit keeps a loaded CI machine within the budget
QUICK = ("--runtime", "onnx", "--backbone", "mobilenetv2", "--export", "onnx", "--quiet", "--max-latency-ms", "100")
# workers pick configurations at random: a file budget no bank reaches keeps a large one from being pruned
SHARED = (*QUICK, "--max-model-kb", "1000000")

# A third-party scorer: a parameter that narrows its search range, one that is never searched, and a
# setting (mode 0) whose fit fails, so a study records failed trials and goes on.
FLAKY_SCORER = """
import numpy as np
import torch
from torch import nn
from framework import hookimpl
from framework.errors import VadblocksError
from framework.params import Param, Search
from framework.scorer import Scorer


class Mean(nn.Module):
    def __init__(self, mean):
        super().__init__()
        self.register_buffer("mean", mean)

    def forward(self, feats):
        d = ((feats[0] - self.mean[None, :, None, None]) ** 2).sum(1).sqrt()
        return d, d.flatten(1).amax(1)


class Flaky(Scorer):
    name = "flaky"
    description = "mean distance; mode 0 fails on purpose"
    parameters = (
        Param("mode", "int", 0, "0 fails during fit, 1 works", min=0, max=1),
        Param("width", "int", 3, "searched only over 2..4 (the plugin narrows its range)", min=1, max=100,
              search=Search(2, 4)),
        Param("note", "string", "x", "never searched (a string)"),
        Param("spare", "int", 5, "never searched (search=False)", min=1, max=9, search=False),
    )

    def grid_size(self, n):
        return n // 8

    def fit(self, features):
        if self.params["mode"] == 0:
            raise RuntimeError("deliberate failure in fit")
        self.mean = features[0].mean((0, 2, 3))
        return self

    def build_scoring_module(self):
        return Mean(self.mean)

    def get_state(self):
        return {"mean": self.mean.numpy()}, {}

    def set_state(self, arrays, config):
        self.mean = torch.from_numpy(arrays["mean"])
        return self


@hookimpl
def register_scorers(register):
    register(Flaky)
"""


# -- the search space ---------------------------------------------------------------------------


def test_distribution_follows_each_declaration():
    sel = Param("kind", "select", "a", "h", options=("a", "b", "c"))
    assert distribution(sel).choices == ("a", "b", "c")
    narrowed = Param("kind", "select", "a", "h", options=("a", "b", "c"), search=Search(choices=("a", "c")))
    assert distribution(narrowed).choices == ("a", "c")
    assert distribution(Param("on", "boolean", True, "h")).choices == (False, True)
    ranged = distribution(Param("n", "int", 3, "h", min=1, max=7))
    assert (ranged.low, ranged.high, ranged.step) == (1, 7, 1)
    assert distribution(Param("n", "int", 3, "h", min=1)) is None  # unbounded: the plugin must give a range
    f = distribution(Param("r", "float", 0.1, "h", min=0.0001, max=1.0, search=Search(0.01, 0.5, log=True)))
    assert (f.low, f.high, f.log) == (0.01, 0.5, True)
    assert distribution(Param("r", "float", 0.1, "h", min=0.0, max=1.0, search=False)) is None
    odd = distribution(Param("p", "int", 1, "h", min=1, max=9, search=Search(1, 5, step=2)))
    assert (odd.low, odd.high, odd.step) == (1, 5, 2)


@pytest.mark.parametrize(
    "search, problem",
    [
        (Search(0, 200), "outside the valid values"),
        (Search(5, 2), "low <= high"),
        (Search(choices=("z",)), "subset of the options"),
        ("wide", "must be None, False or a Search"),
    ],
)
def test_bad_search_declarations_are_refused(search, problem):
    kind = "select" if search == Search(choices=("z",)) else "int"
    with pytest.raises(VadblocksError, match=problem):
        if kind == "select":
            Param("k", "select", "a", "h", options=("a", "b"), search=search)
        else:
            Param("k", "int", 3, "h", min=1, max=100, search=search)


def test_image_sizes_searched_only_above_96():
    assert image_sizes(96, 96) == (96,)
    assert image_sizes(240, 320) == (96, 128, 160, 192, 224)
    assert image_sizes(1024, 1024) == (96, 128, 160, 192, 224, 256, 320)
    assert image_sizes(64, 64) == (64,)


def test_space_is_conditional_and_respects_fixed_values(registry):
    import optuna

    space = SearchSpace(registry, {"augment": "none"}, (96, 128), square=False)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), directions=["maximize", "minimize"])
    seen = set()
    for _ in range(30):
        trial = study.ask()
        values, size = space.suggest(trial)
        scorer = values["scoring-function"]
        seen.add(scorer)
        assert "augment" not in trial.params and values["augment"] == "none"
        assert size in (96, 128) and trial.params["image-size"] == size
        own = {p.name for p in registry.scorer(scorer).cls.parameters}
        other = {p.name for n, e in registry.scorers.items() if n != scorer for p in e.cls.parameters} - own
        assert own <= set(values) and not other & set(trial.params)
        assert "threshold-policy" not in trial.params and "validation" not in trial.params
        resolve(registry, values)  # every suggestion is a valid configuration
        study.tell(trial, [0.5, 1.0])
    assert seen == {"gmm", "patchcore"}
    rect = SearchSpace(registry, {}, (96,), square=False)
    assert "rot90" not in rect._distribution(registry_param(registry, "augment")).choices
    assert rect.start()["scoring-function"] == "patchcore" and rect.start("gmm")["scoring-function"] == "gmm"
    # the first trials: the start, the other scorer on its backbone, the start's scorer on the other backbone
    starts = SearchSpace(registry, {}, (96,)).starts()
    pairs = [(s["scoring-function"], s["backbone"]) for s in starts]
    assert pairs[0] == ("patchcore", "mobilenetv2") and ("gmm", "mobilenetv2") in pairs
    assert ("patchcore", "efficientnet-lite0") in pairs and len(pairs) == len(set(pairs))
    assert sorted(pairs) == sorted(
        {pairs[0]}
        | {(s, "mobilenetv2") for s in registry.scorers}
        | {("patchcore", b) for b in SearchSpace(registry, {}, (96,)).backbones}
    )
    for start in starts:  # every value at its declared default
        assert all(
            registry_param(registry, k).default == v
            for k, v in start.items()
            if k not in ("scoring-function", "backbone")
        )
    low = SearchSpace(registry, {}, (96,)).starts("gmm")
    assert (low[0]["scoring-function"], low[0]["backbone"]) == ("gmm", "mobilenetv2")
    assert [s["scoring-function"] for s in SearchSpace(registry, {"backbone": "mobilenetv2"}, (96,)).starts()] == [
        "patchcore",
        *[n for n in registry.scorers if n != "patchcore"],
    ]


def registry_param(registry, name):
    from framework.config import all_params

    return next(p for p, _ in all_params(registry) if p.name == name)


# -- features shared between trainings ----------------------------------------------------------


def test_feature_cache_gives_the_same_models_and_reuses_features(small_data, registry):
    ds = load_dataset(small_data["edge-impulse"])
    cache = FeatureCache()
    deep = resolve(registry, {"num-layers": 2, "augment": "none"})
    shallow = resolve(registry, {"num-layers": 1, "augment": "flips", "sampling-ratio": 0.2})
    for config in (deep, shallow):
        plain = train(ds, config, registry=registry, progress=False)
        cached = train(ds, config, registry=registry, progress=False, feature_cache=cache)
        assert cached.threshold == plain.threshold
        assert cached.metadata["validation"]["image_auroc"] == plain.metadata["validation"]["image_auroc"]
        assert cached.metadata["trainScores"] == plain.metadata["trainScores"]
        assert cached.feature_cache is None  # the returned model does not hold the cache
    stats = cache.stats()
    assert stats["hits"] >= 4  # the shallow training read the deep one's originals (and the synthetic images)
    small = FeatureCache(max_bytes=stats["bytes"] // 4)
    train(ds, deep, registry=registry, progress=False, feature_cache=small)
    assert 0 < small.bytes <= small.max_bytes


# -- footprint ----------------------------------------------------------------------------------


def test_plan_arena_reuses_memory_of_dead_tensors():
    assert plan_arena([(100, 0, 1), (50, 1, 2), (100, 2, 3)]) == 150  # a and c share offset 0
    assert plan_arena([(100, 0, 3), (50, 1, 2), (100, 2, 3)]) == 250  # all alive at op 2
    assert plan_arena([(10, 0, 0), (10, 1, 1), (10, 2, 2)]) == 10
    assert plan_arena([]) == 0


@pytest.mark.parametrize("fmt, lifetimes", [("onnx", onnx_lifetimes), ("tflite", tflite_lifetimes)])
def test_peak_ram_of_real_exported_files(exported_model, fmt, lifetimes):
    file = exported_model / ("model.onnx" if fmt == "onnx" else "model.tflite")
    tensors = lifetimes(file)
    sizes = [s for s, _, _ in tensors]
    arena = peak_ram_bytes(file, fmt)
    assert max(sizes) < arena < sum(sizes)
    assert 96 * 96 * 3 * 4 in sizes  # the float input image
    assert 48 * 48 * 32 * 4 in sizes  # MobileNetV2's first convolution: 32 channels at stride 2


def test_budget_and_pareto_rules():
    b = Budget(max_latency_ms=2.0, max_model_kb=100)
    assert b.excess({"latency_ms": 1.0, "model_kb": 150, "ram_kb": 9}) == {"latency_ms": -0.5, "model_kb": 0.5}
    assert b.broken({"latency_ms": 3.0, "model_kb": 50, "ram_kb": 9}) == ["latency 3 ms > 2 ms"]
    rows = [
        {"number": i, "image_auroc": a, "latency_ms": l}
        for i, (a, l) in enumerate([(0.9, 2.0), (0.8, 1.0), (0.85, 3.0), (0.95, 4.0), (0.8, 1.5)])
    ]
    assert [t["number"] for t in pareto_front(rows)] == [1, 0, 3]


# -- the study ----------------------------------------------------------------------------------


def tune_json(*args: str, ok: bool = True) -> dict:
    result = invoke("tune", *args, "--json", ok=ok)
    return json.loads(result.stdout.strip().splitlines()[-1]) if ok else result


def test_tune_writes_outputs_and_resumes(small_data, tmp_path):
    out = tmp_path / "tune"
    data = small_data["edge-impulse"]
    first = tune_json("--data-directory", data, "--out-directory", out, "--n-trials", "3", *QUICK)
    assert len(first["trials"]) == 3 and first["trials_this_worker"] == 3
    assert all(t["state"] == "COMPLETE" and t["fits"] for t in first["trials"])
    best = first["best"]
    assert best["image_auroc"] == max(t["image_auroc"] for t in first["trials"])
    assert best["latency_ms"] > 0 and best["model_kb"] > 0 and best["ram_kb"] > 0
    assert best["parameters"]["scoring-function"] in ("patchcore", "gmm")
    # the first trial is the default configuration, the second GMM at its defaults (the backbone is fixed)
    first_trial, second = (next(t for t in first["trials"] if t["number"] == n)["parameters"] for n in (0, 1))
    assert first_trial["scoring-function"] == "patchcore"
    assert first_trial["num-layers"] == 2 and first_trial["augment"] == "flips"  # the defaults
    assert second["scoring-function"] == "gmm" and second["capacity"] == "medium" and second["augment"] == "flips"
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    board = json.loads((out / "leaderboard.json").read_text())
    assert {t["number"] for t in board["trials"]} == {0, 1, 2} and board["pareto"]
    meta = json.loads((out / "model" / "anomaly_metadata.json").read_text())
    assert meta["tuning"]["trial"] == best["number"] and meta["tuning"]["runtime"] == "onnx"
    assert meta["parameters"] == best["parameters"] and (out / "model" / "model.onnx").is_file()
    line = best["parameter_line"].split()
    assert line[line.index("--scoring-function") + 1] == best["parameters"]["scoring-function"]
    invoke("test", "--model-directory", out / "model", "--data-directory", data)
    # a second run resumes the study: only the missing trials run
    again = tune_json("--data-directory", data, "--out-directory", out, "--n-trials", "5", *QUICK)
    assert again["trials_this_worker"] == 2
    assert sorted(t["number"] for t in again["trials"]) == [0, 1, 2, 3, 4]


def test_failed_trials_are_recorded_and_plugins_narrow_their_range(small_data, tmp_path, monkeypatch, fresh_plugins):
    monkeypatch.syspath_prepend(str(write_plugin_dist(tmp_path / "site", "vad-flaky", "vad_flaky", FLAKY_SCORER)))
    out = tmp_path / "tune"
    result = tune_json(
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--n-trials",
        "6",
        "--scoring-function",
        "flaky",
        *QUICK,
    )
    trials = result["trials"]
    failed = [t for t in trials if t["state"] == "FAIL"]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    assert len(trials) == 6 and failed and done
    assert all("deliberate failure in fit" in t["reason"] for t in failed)
    assert all(t["parameters"]["mode"] == 1 for t in done)
    assert all(2 <= t["parameters"]["width"] <= 4 and t["parameters"]["spare"] == 5 for t in done)
    assert result["best"]["parameters"]["scoring-function"] == "flaky"
    table = invoke(
        "tune",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--n-trials",
        "6",
        "--scoring-function",
        "flaky",
        *QUICK,
    ).output
    assert "fail: RuntimeError: deliberate failure in fit" in table


def test_tune_refusals_are_one_clear_message(small_data, tmp_path):
    data = small_data["edge-impulse"]
    cases = [
        (["--storage", "notadb://x/y"], "cannot open the study database"),
        (["--storage", "postgresql+psycopg://me:s3cret@127.0.0.1:9/db"], "cannot open the study database"),
        (["--max-latency-ms", "-1"], "expected a number above 0"),
        (["--validation", "0"], "drop --validation 0"),
        (["--num-layers", "7"], "--num-layers"),
        (["--accuracy", "labelled", "--data-directory", tmp_path / "nolabels"], "--accuracy labelled"),
    ]
    nolabels = tmp_path / "nolabels" / "train" / "good"
    nolabels.mkdir(parents=True)
    for f in sorted((Path(small_data["folder"]) / "train" / "good").iterdir())[:12]:
        shutil.copy(f, nolabels)
    for extra, message in cases:
        args = ["--data-directory", data, "--out-directory", tmp_path / "o", *QUICK, *extra]
        result = invoke("tune", *args, ok=False)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output and "s3cret" not in result.output
    assert not (tmp_path / "o" / "model").exists()


def test_impossible_budget_and_changed_settings(small_data, tmp_path):
    data, out = small_data["edge-impulse"], tmp_path / "o"
    result = invoke(
        "tune",
        "--data-directory",
        data,
        "--out-directory",
        out,
        "--n-trials",
        "2",
        *QUICK,
        "--max-latency-ms",
        "0.001",
        ok=False,
    )
    assert result.exit_code == 2 and "no configuration met the budget (latency <= 0.001 ms, " in result.output
    assert "latency" in result.output.split("the closest")[1]
    assert (out / "leaderboard.json").is_file() and not (out / "model").exists()
    changed = invoke("tune", "--data-directory", data, "--out-directory", out, "--n-trials", "2", *QUICK, ok=False)
    assert "was started with other settings (budget" in changed.output


# -- several workers on one storage -------------------------------------------------------------


def run_workers(storage: str, data: Path, outs: list[Path], n_trials: int) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "framework.cli",
        "tune",
        "--data-directory",
        str(data),
        "--n-trials",
        str(n_trials),
        "--storage",
        storage,
        "--study",
        "shared",
        *SHARED,
    ]
    procs = [
        subprocess.Popen(
            cmd + ["--out-directory", str(o)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for o in outs
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out))
    return results


def check_shared_study(storage: str, data: Path, tmp_path: Path, n_trials: int) -> None:
    import optuna

    results = run_workers(storage, data, [tmp_path / "w1", tmp_path / "w2"], n_trials)
    for r in results:
        assert r.returncode == 0, r.stdout[-3000:]
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) >= n_trials  # every trial once
    assert all(t.state.name == "COMPLETE" for t in trials), [
        (t.number, t.state.name, t.user_attrs.get("reason")) for t in trials
    ]
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both processes did trials
    # a worker started after the study is full runs nothing and writes the outputs with every trial
    final = tune_json(
        "--data-directory",
        data,
        "--out-directory",
        tmp_path / "w3",
        "--n-trials",
        str(n_trials),
        "--storage",
        storage,
        "--study",
        "shared",
        *SHARED,
    )
    assert final["trials_this_worker"] == 0
    assert sorted(t["number"] for t in final["trials"]) == sorted(numbers)
    board = json.loads((tmp_path / "w3" / "leaderboard.json").read_text())
    assert len(board["trials"]) == len(numbers)


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(small_data, tmp_path):
    check_shared_study(f"sqlite:///{tmp_path / 'shared.db'}", small_data["edge-impulse"], tmp_path, 6)


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres_url():
    """A real PostgreSQL server of Debian's `postgresql` package, in a temporary cluster for this test."""
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: install Debian's postgresql (scripts/provision_system.sh)")
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="vadblocks-pg-"))
    os.chmod(root, 0o755)
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as Debian's postgres user
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pgdata = root / "data"
    subprocess.run(
        as_user + [str(bindir / "initdb"), "-D", str(pgdata), "-U", "vadblocks", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        as_user
        + [
            str(bindir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://vadblocks@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            as_user + [str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(small_data, tmp_path, postgres_url):
    check_shared_study(postgres_url, small_data["edge-impulse"], tmp_path, 6)


def test_leaderboard_orders_fitting_trials_first():
    class T:
        def __init__(self, number, state, **attrs):
            self.number, self.user_attrs = number, attrs
            self.state = type("S", (), {"name": state})()

    rows = leaderboard(
        [
            T(0, "COMPLETE", image_auroc=0.9, latency_ms=5.0, model_kb=1, ram_kb=1),
            T(1, "COMPLETE", image_auroc=0.8, latency_ms=1.0, model_kb=1, ram_kb=1),
            T(2, "FAIL", reason="boom"),
            T(3, "COMPLETE", image_auroc=0.85, latency_ms=0.5, model_kb=1, ram_kb=1),
        ],
        Budget(max_latency_ms=2.0),
    )
    assert [r["number"] for r in rows] == [3, 1, 0, 2]
    assert rows[2]["broken"] == ["latency 5 ms > 2 ms"] and not rows[2]["fits"] and rows[3]["reason"] == "boom"
    assert np.isfinite(rows[0]["image_auroc"])


RACE_WORKER = r"""
import sys, time
import optuna
from framework.tune.start_sampler import StartFirstSampler
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, start_at = sys.argv[1], float(sys.argv[2])
while time.time() < start_at:  # every worker begins at the same instant
    time.sleep(0.001)
sampler = StartFirstSampler(optuna.samplers.TPESampler(n_startup_trials=2), [{"x": 0.5, "kind": "b"}, {"x": 0.25}])
study = optuna.create_study(storage=url, study_name="race", load_if_exists=True, sampler=sampler)
study.optimize(lambda t: t.suggest_float("x", 0, 1) + len(t.suggest_categorical("kind", ["a", "b", "cc"])),
               n_trials=3)
"""


def test_start_trial_runs_once_when_workers_race(tmp_path):
    """Trials 0 and 1 are the starting configurations, each run by exactly one of several workers that open one
    SQLite study at the same instant (Optuna's enqueue_trial let two of them run one; the second then failed to
    report it)."""
    import optuna

    url = f"sqlite:///{tmp_path / 'race.db'}"
    optuna.create_study(storage=url, study_name="race")
    start_at = str(time.time() + 3)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    workers = [
        subprocess.Popen([sys.executable, "-c", RACE_WORKER, url, start_at], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [w.communicate(timeout=120)[1] for w in workers]
    assert all(w.returncode == 0 for w in workers), errors
    trials = optuna.load_study(study_name="race", storage=url).trials
    assert sorted(t.number for t in trials) == list(range(12))
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert trials[0].params == {"x": 0.5, "kind": "b"} and trials[1].params["x"] == 0.25
    assert sum(t.params == {"x": 0.5, "kind": "b"} for t in trials) == 1
    assert sum(t.params["x"] == 0.25 for t in trials) == 1  # a start lacking a parameter: that one is sampled


def test_low_power_target_quantises_every_layer(small_data, registry, tmp_path):
    """The microcontroller preset fixes --int8-precision full (no FPU assumed) unless the command line sets it."""
    from framework.tune.tuner import DataSource, TuneOptions, Tuner

    data = DataSource(small_data["edge-impulse"])
    low = Tuner(data, tmp_path / "a", TuneOptions(target="low-power"), registry, log=lambda _: None)
    assert low.space.fixed["int8-precision"] == "full" and low.runtime == "tflite-int8"
    mine = Tuner(
        data,
        tmp_path / "b",
        TuneOptions(target="low-power", fixed={"int8-precision": "mixed"}),
        registry,
        log=lambda _: None,
    )
    assert mine.space.fixed["int8-precision"] == "mixed"
    assert "int8-precision" not in Tuner(data, tmp_path / "c", TuneOptions(), registry, log=lambda _: None).space.fixed


def test_a_board_target_keeps_tflm_arena_and_flash_within_the_board(small_data, tmp_path):
    """`--target esp32-s3`: each trial's int8 file runs under TFLM, RAM is TFLM's arena, the leaderboard shows
    arena, flash and MACs; the chosen model loads in TFLM within the arena its metadata states."""
    from framework.portable import micro
    from framework.tune import tuner as tuning

    out = tmp_path / "board"
    args = ("--data-directory", small_data["edge-impulse"], "--out-directory", out, "--n-trials", "1")
    args += ("--target", "esp32-s3", "--image-size", "96", "--export", "tflite-int8", "--quiet")
    result = tune_json(*args)
    done = [t for t in result["trials"] if t["state"] == "COMPLETE"]
    assert done and all(t["arena_kb"] and t["ram_kb"] == t["arena_kb"] and t["macs_m"] > 0 for t in done)
    assert all(t["planner_ram_kb"] <= t["arena_kb"] for t in done)  # the planner leaves out TFLM's tail
    assert all(t["fits"] == (t["arena_kb"] <= 512 and t["model_kb"] <= 8192) for t in done)
    assert result["trials"][0]["parameters"]["scoring-function"] == "gmm"  # boards start from GMM
    assert result["best"]["arena_kb"] <= 512
    table = tuning.table(result["trials"])  # what `vadblocks tune` prints
    assert table[0].split()[-3:] == ["MMAC", "fits", "settings"] and f"{done[0]['macs_m']:.1f}" in table[1]
    meta = json.loads((out / "model" / "anomaly_metadata.json").read_text())
    tflm = meta["exports"]["tflite-int8"]["tflm"]
    assert tflm["runs"] and tflm["arenaBytes"] <= 512 * 1024
    micro.load((out / "model" / "model_quantized_int8_io.tflite").read_bytes(), "model", tflm["arenaBytes"])


def test_without_tflite_micro_boards_refuse_and_low_power_falls_back(small_data, registry, tmp_path, monkeypatch):
    import importlib.util

    from framework.tune.tuner import DataSource, TuneOptions, Tuner

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tflite_micro" else real(name, *a)
    )
    data = DataSource(small_data["edge-impulse"])
    with pytest.raises(VadblocksError, match="cortex-m7 measures each trial under TensorFlow Lite Micro"):
        Tuner(data, tmp_path / "a", TuneOptions(target="cortex-m7"), registry, log=lambda _: None)
    said: list[str] = []
    low = Tuner(data, tmp_path / "b", TuneOptions(target="low-power"), registry, log=said.append)
    assert low.micro is False and any("planner's estimate" in line for line in said)
