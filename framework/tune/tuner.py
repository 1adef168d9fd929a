"""``vadblocks tune``: find the best configuration for a dataset and a device budget with Optuna.

Each trial trains one configuration from the declared search space (:mod:`framework.tune.search_space`)
through the normal training path, so its accuracy is the validation's (held-out normal images with
synthetic anomalies; the labelled test split when there is one and ``accuracy="auto"``), exports the
model file of the chosen runtime and measures it (:mod:`framework.serve.footprint`): single-image latency,
file size, peak activation memory. Optuna samples the two objectives (accuracy up, latency down)
with budgets as constraints, and keeps every trial in a storage (an SQLite file in the out directory
by default, so a stopped study resumes; any database URL lets several workers share one study).
Trials that share a backbone and image size reuse extracted features (:mod:`framework.train.feature_cache`).
At the end: a leaderboard (terminal and JSON), the accuracy/latency Pareto front as a PNG, and the
best configuration trained again into ``model/`` with the standard outputs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from framework.errors import VadblocksError
from framework.outputs import atomic_write_text
from framework.params import SCORER_PARAM
from framework.portable.formats import EXPORT_FILES
from framework.tune.targets import TARGETS, Budget, Target

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from framework.data import Dataset
    from framework.plugins import Registry

RUNTIMES = tuple(EXPORT_FILES)  # a trial is measured on one exported file
ACCURACY_SOURCES = ("auto", "synthetic", "labelled")
DEFAULT_STUDY = "vadblocks"
STORAGE_FILE = "tune.db"
LEADERBOARD_FILE = "leaderboard.json"
PARETO_FILE = "pareto.png"
MODEL_DIR = "model"
TUNE_CALIBRATION = 32  # training images calibrating a trial's int8 file (the final model uses the full set)
STARTUP_TRIALS = 8  # random trials before the sampler models the objectives
HEARTBEAT_S, GRACE_S = 20, 120  # a trial whose worker died is marked failed after GRACE_S
SCHEMA_RETRIES = 4
# what a worker sees when another one is creating the tables of a new study database at the same moment
SCHEMA_RACE = ("already exists", "UniqueViolation", "UNIQUE constraint failed", "database is locked")


@dataclass
class TuneOptions:
    """What ``vadblocks tune`` was asked for (the CLI fills it)."""

    n_trials: int = 40
    timeout: float | None = None
    runtime: str | None = None  # None: the target's, else tflite
    budget: Budget = field(default_factory=Budget)
    target: str | None = "high-power"  # a TARGETS preset, or None / "none" for no preset
    storage: str | None = None  # None: sqlite in the out directory
    study: str = DEFAULT_STUDY
    accuracy: str = "auto"
    seed: int = 0
    export: tuple[str, ...] = ("onnx", "tflite", "tflite-int8")
    fixed: dict[str, Any] = field(default_factory=dict)  # parameters given on the command line: not searched
    image_size: int | None = None  # fixed image size (else searched when the images are larger than 96)
    progress: bool = True


def resolve_target(opts: TuneOptions) -> tuple[str, Budget, Target | None]:
    """Runtime and budget (explicit options over the ``--target`` preset), and the preset (None without one)."""
    if opts.runtime is not None and opts.runtime not in RUNTIMES:
        raise VadblocksError(f"--runtime: {opts.runtime!r} is not valid; expected one of {', '.join(RUNTIMES)}")
    if opts.accuracy not in ACCURACY_SOURCES:
        raise VadblocksError(
            f"--accuracy: {opts.accuracy!r} is not valid; expected one of {', '.join(ACCURACY_SOURCES)}"
        )
    preset = None
    if opts.target not in (None, "none"):
        if opts.target not in TARGETS:
            raise VadblocksError(
                f"--target: {opts.target!r} is not valid; expected one of {', '.join(TARGETS)} or none"
            )
        preset = TARGETS[opts.target]
    base = preset.budget if preset else Budget()
    budget = Budget(**{k: v if v is not None else getattr(base, k) for k, v in asdict(opts.budget).items()})
    for k, v in asdict(budget).items():
        if v is not None and not (math.isfinite(v) and v > 0):
            raise VadblocksError(f"--{k.replace('_', '-')}: {v!r} is not valid; expected a number above 0")
    runtime = opts.runtime or (preset.runtime if preset else "tflite")
    return runtime, budget, preset


def redact(url: str) -> str:
    """A storage URL without its password (for messages and metadata)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all: say so with the text as given
        return url


def open_storage(url: str) -> "optuna.storages.BaseStorage":
    """Optuna's database storage at ``url``, or one clear error (bad URL, missing driver, unreachable)."""
    import optuna

    kwargs: dict[str, Any] = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # workers wait for each other's writes
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, "connect_args": _connect_timeout(url)}
    error: Exception = VadblocksError("no attempt")
    for attempt in range(SCHEMA_RETRIES + 1):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of every kind become one message
            # workers starting together on a new database race to create its tables: the loser retries
            if attempt < SCHEMA_RETRIES and any(s in str(exc) for s in SCHEMA_RACE):
                time.sleep(0.5 + attempt)
                continue
            error = exc
            break
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise VadblocksError(
        f"--storage {redact(url)}: cannot open the study database ({first[:300]}). Give a "
        "SQLAlchemy URL such as sqlite:///tune.db or postgresql+psycopg://user:pass@host/db, "
        "and check that the server is running and reachable"
    )


def _connect_timeout(url: str) -> dict[str, Any]:
    return {"connect_timeout": 10} if url.startswith("postgresql") else {}


class DataSource:
    """A data directory loaded at the image sizes trials ask for (each size once)."""

    def __init__(self, path: str | Path, **load_args: Any) -> None:
        from framework.data import IMAGE_SUFFIXES, is_edge_impulse_dir, load_dataset, read_image

        self.path, self.load_args, self._load = Path(path), load_args, load_dataset
        self._sets: dict[int | None, "Dataset"] = {}
        if is_edge_impulse_dir(self.path):  # arrays at the impulse's size: the native size is theirs
            self.native_shape = tuple(self.dataset(None).image_shape[:2])
        else:
            good = self.path / "train" / "good"
            files = sorted(p for p in good.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if good.is_dir() else []
            if not files:
                load_dataset(self.path, **load_args, image_size=96)  # raises the loader's own clear message
                raise VadblocksError(f"{good} holds no training images")
            _, (width, height) = read_image(files[0])
            self.native_shape = (height, width)

    def dataset(self, size: int | None) -> "Dataset":
        """The data at ``size`` x ``size`` (None or the native size: as stored)."""
        if size is not None and (size, size) == getattr(self, "native_shape", None) and None in self._sets:
            size = None
        if size not in self._sets:
            self._sets[size] = self._load(self.path, **self.load_args, image_size=size)
        return self._sets[size]


class Tuner:
    """One worker of a study: runs trials until the study holds ``n_trials`` (or the timeout passes)."""

    def __init__(
        self,
        data: "DataSource",
        out_directory: str | Path,
        opts: TuneOptions,
        registry: "Registry",
        log: Callable[[str], None] = print,
    ) -> None:
        from framework.config import all_params, resolve
        from framework.params import known_values
        from framework.train.feature_cache import FeatureCache
        from framework.tune.search_space import SearchSpace, image_sizes

        if importlib.util.find_spec("optuna") is None:
            raise VadblocksError("vadblocks tune needs Optuna: pip install 'vadblocks[tune]'")
        self.opts, self.registry, self.log, self.data = opts, registry, log, data
        self.out = Path(out_directory)
        self.runtime, self.budget, preset = resolve_target(opts)
        self.start_scorer = preset.start_scorer if preset else None
        self.micro = bool(preset and preset.micro != "no" and self.runtime == "tflite-int8")
        if self.micro and importlib.util.find_spec("tflite_micro") is None:
            if preset and preset.micro == "required":
                raise VadblocksError(
                    f"--target {opts.target} measures each trial under TensorFlow Lite Micro: pip install tflite-micro"
                )
            self.micro = False
            log("tflite-micro is not installed: activations are the planner's estimate, not TFLM's measured arena")
        fixed = {
            **(preset.fixed if preset else {}),
            **known_values(opts.fixed, [p.name for p, _ in all_params(registry)]),
        }
        if str(fixed.get("validation", "1")).lower() in ("0", "false", "no", "off"):
            raise VadblocksError("tune measures every trial through validation: drop --validation 0")
        resolve(registry, fixed)  # one clear message for a bad fixed value before anything runs
        h, w = data.native_shape
        sizes = (opts.image_size,) if opts.image_size else image_sizes(h, w)
        self.space = SearchSpace(registry, fixed, sizes, square=(h == w) or bool(opts.image_size))
        first = data.dataset(self.space.start(self.start_scorer).get("image-size", sizes[0]))
        test = first.test
        labelled = bool(len(test)) and bool(test.anomalous.any()) and bool((~test.anomalous).any())
        if opts.accuracy == "labelled" and not labelled:
            raise VadblocksError(
                f"--accuracy labelled needs a test split with both 'anomaly' and 'no anomaly' "
                f"images; {data.path} has none: use --accuracy synthetic"
            )
        self.accuracy_source = (
            "labelled" if opts.accuracy == "labelled" or (opts.accuracy == "auto" and labelled) else "synthetic"
        )
        self.cache = FeatureCache()
        self.storage_url = opts.storage or f"sqlite:///{(self.out / STORAGE_FILE).absolute()}"
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    # -- the study ---------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What every worker of one study must agree on (kept in the study; a mismatch is refused)."""
        return {
            "runtime": self.runtime,
            "budget": asdict(self.budget),
            "accuracy": self.accuracy_source,
            "fixed": {k: v for k, v in sorted(self.space.fixed.items())},
            "sizes": list(self.space.sizes),
        }

    def open_study(self) -> "optuna.Study":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if self.opts.storage is None:
            self.out.mkdir(parents=True, exist_ok=True)
        storage = open_storage(self.storage_url)
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=self.opts.study,
                load_if_exists=True,
                directions=["maximize", "minimize"],
                sampler=self._sampler(0),
            )
        except ValueError as exc:
            raise VadblocksError(
                f"study {self.opts.study!r} in {redact(self.storage_url)} cannot be used: {exc}; "
                "pick another --study name"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the database went away between connect and use
            raise VadblocksError(
                f"--storage {redact(self.storage_url)}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"
            ) from None
        mine = json.loads(json.dumps(self.settings()))
        theirs = study.user_attrs.get("settings")
        if theirs is None:
            study.set_user_attr("settings", mine)
            study.set_user_attr("dataDirectory", str(self.data.path))
        elif theirs != mine:
            diff = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise VadblocksError(
                f"study {self.opts.study!r} was started with other settings ({', '.join(diff)}: "
                f"{ {k: theirs.get(k) for k in diff} }); give this worker the same options or "
                "pick another --study name"
            )
        study.sampler = self._sampler(len(study.trials))
        return study

    def _sampler(self, done: int) -> "optuna.samplers.BaseSampler":
        import optuna

        from framework.tune.start_sampler import StartFirstSampler

        entropy = [self.opts.seed, done] + ([os.getpid()] if self.opts.storage else [])
        seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS, multivariate=True, group=True)
        return StartFirstSampler(tpe, self.space.starts(self.start_scorer))

    def run(self) -> dict[str, Any]:
        """Run this worker's share of the study, then write the outputs; returns the ``--json`` object."""
        import optuna

        study = self.open_study()
        so_far = len([t for t in study.trials if t.state.name != "WAITING"])
        self.log(
            f"Study {self.opts.study!r} in {redact(self.storage_url)}: {so_far} trial(s) so far, "
            f"{self.opts.n_trials} wanted; runtime {self.runtime}; budget: {self.budget.describe()}; "
            f"accuracy from {self.accuracy_source} validation"
        )
        for line in self.space.describe():
            self.log(f"  search {line}")
        t0 = time.perf_counter()
        ran = self._optimize(study, optuna)
        minutes = (time.perf_counter() - t0) / 60
        trials = leaderboard(study.get_trials(deepcopy=False), self.budget)
        self.out.mkdir(parents=True, exist_ok=True)
        rate = ran / minutes if minutes > 0 else 0.0
        summary = {
            "study": self.opts.study,
            "storage": redact(self.storage_url),
            "runtime": self.runtime,
            "budget": asdict(self.budget),
            "accuracy_source": self.accuracy_source,
            "trials_this_worker": ran,
            "minutes_this_worker": round(minutes, 2),
            "trials_per_minute": round(rate, 2),
            "feature_cache": self.cache.stats(),
            "trials": trials,
        }
        pareto = pareto_front([t for t in trials if t["fits"]])
        board = {**summary, "pareto": [t["number"] for t in pareto]}
        atomic_write_text(self.out / LEADERBOARD_FILE, json.dumps(board, indent=2, default=str) + "\n")
        write_pareto_png(self.out / PARETO_FILE, trials, pareto, self.budget, self.runtime)
        best = pick_best(trials, self.budget)
        model_dir = self.out / MODEL_DIR
        self.train_best(best, model_dir, study)
        return {
            "best": {
                k: best[k]
                for k in (
                    "number",
                    "parameters",
                    "image_size",
                    "image_auroc",
                    "latency_ms",
                    "model_kb",
                    "ram_kb",
                    "arena_kb",
                    "macs_m",
                    "parameter_line",
                )
            },
            "trials": trials,
            "model_directory": str(model_dir),
            "leaderboard": str(self.out / LEADERBOARD_FILE),
            "pareto_png": str(self.out / PARETO_FILE),
            "trials_per_minute": summary["trials_per_minute"],
            "trials_this_worker": ran,
        }

    def _optimize(self, study: "optuna.Study", optuna: Any) -> int:
        from tqdm.auto import tqdm

        def count() -> int:  # trials started or done (an enqueued, waiting one is not yet a trial)
            return sum(t.state.name != "WAITING" for t in study.get_trials(deepcopy=False))

        left = self.opts.n_trials - count()
        if left <= 0:
            return 0
        bar = tqdm(total=left, desc="trials", unit="trial", disable=not self.opts.progress, leave=False)
        ran = [0]

        def after(study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
            ran[0] += 1
            bar.update(1)
            best = pick_best(leaderboard(study.get_trials(deepcopy=False), self.budget), self.budget, strict=False)
            if best is not None:
                bar.set_postfix_str(
                    f"best #{best['number']}: AUROC {best['image_auroc']:.3f}, {best['latency_ms']:.2f} ms"
                )
            if count() >= self.opts.n_trials:
                study.stop()

        try:
            study.optimize(
                self.objective,
                n_trials=left,
                timeout=self.opts.timeout,
                callbacks=[after],
                catch=(Exception,),
                gc_after_trial=True,
            )
        finally:
            bar.close()
        return ran[0]

    # -- one trial ---------------------------------------------------------------------
    def objective(self, trial: "optuna.trial.Trial") -> tuple[float, float]:
        """Train, export and measure one configuration; record everything on the trial.

        A configuration already measured in the study is not measured again (its figures are copied);
        one whose scorer constants alone exceed the file budget is pruned before the export.
        """
        import optuna

        from framework.config import resolve, to_args

        trial.set_user_attr("worker", self.worker)
        try:
            values, size = self.space.suggest(trial)
            config = resolve(self.registry, {**values, "validation": True})
            parameters = config.as_cli_values(self.registry)
            trial.set_user_attr("image_size", size)
            trial.set_user_attr("parameters", parameters)
            trial.set_user_attr("parameter_line", " ".join(to_args(self.registry, config)))
            same = [
                t
                for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.user_attrs.get("parameters") == parameters and t.user_attrs.get("image_size") == size
            ]
            if same:
                result = {k: v for k, v in same[0].user_attrs.items() if k not in ("worker", "seconds")}
                result["repeat_of"] = same[0].number
            else:
                result = self.evaluate(config, size)
        except optuna.TrialPruned as exc:
            trial.set_user_attr("reason", str(exc))
            raise
        except Exception as exc:
            trial.set_user_attr("reason", f"{type(exc).__name__}: {exc}"[:500])
            raise
        for k, v in result.items():
            trial.set_user_attr(k, v)
        for key, value in self.budget.excess(result).items():  # Optuna's constraints: <= 0 is feasible
            trial.set_constraint(key, value)
        return result["image_auroc"], result["latency_ms"]

    def evaluate(self, config: Any, size: int) -> dict[str, Any]:
        """Accuracy, latency, size and memory of one configuration at ``size`` x ``size``."""
        import optuna

        from framework.serve import footprint
        from framework.train.export import save_with_exports
        from framework.train.pipeline import train

        t0 = time.perf_counter()
        ds = self.data.dataset(size)
        model = train(ds, config, registry=self.registry, progress=False, feature_cache=self.cache)
        val = model.metadata["validation"]
        if val.get("source") is None:
            raise VadblocksError(
                f"validation did not run ({val.get('reason')}); tune needs at least 10 training images"
            )
        figures = val["labelled"] if self.accuracy_source == "labelled" else val
        if figures["image_auroc"] is None:
            raise VadblocksError("validation gave no image AUROC")
        floor_kb = constants_kb(model.scorer)
        if self.budget.max_model_kb is not None and floor_kb > self.budget.max_model_kb:
            raise optuna.TrialPruned(
                f"the scorer's constants alone take {floor_kb:.0f} KB > {self.budget.max_model_kb:g} KB (not exported)"
            )
        with tempfile.TemporaryDirectory(prefix="vadblocks-trial-") as tmp:
            picks = np.linspace(0, len(ds.train) - 1, min(TUNE_CALIBRATION, len(ds.train))).astype(int)
            save_with_exports(model, Path(tmp) / "m", (self.runtime,), calibration=ds.train.images[picks])
            measured = footprint.measure(Path(tmp) / "m", self.runtime, ds.train.images[0], micro=self.micro)
        return {
            "image_auroc": float(figures["image_auroc"]),
            "pixel_auroc": figures.get("pixel_auroc"),
            "f1": figures.get("f1"),
            "synthetic_image_auroc": val["image_auroc"],
            "test_image_auroc": (val.get("labelled") or {}).get("image_auroc"),
            "accuracy_source": self.accuracy_source,
            "threshold": model.threshold,
            **{k: None if v is None else round(float(v), 4) for k, v in measured.items()},
            "fit_seconds": model.metadata["timings"]["fitSeconds"],
            "seconds": round(time.perf_counter() - t0, 2),
        }

    # -- the best model ----------------------------------------------------------------
    def train_best(self, best: dict[str, Any], model_dir: Path, study: "optuna.Study") -> None:
        """Train the chosen configuration on all images again, with the standard outputs, into ``model_dir``."""
        from framework.config import resolve
        from framework.outputs import output_lock
        from framework.train.export import save_with_exports
        from framework.train.pipeline import train

        config = resolve(self.registry, best["parameters"])
        ds = self.data.dataset(best["image_size"])
        self.log(f"Training the best configuration (trial {best['number']}) with the standard outputs ...")
        with output_lock(model_dir):
            model = train(ds, config, registry=self.registry, progress=False, feature_cache=self.cache)
            model.metadata["tuning"] = {
                "study": self.opts.study,
                "storage": redact(self.storage_url),
                "trial": best["number"],
                "trialsInStudy": len(study.trials),
                "runtime": self.runtime,
                "budget": asdict(self.budget),
                "target": self.opts.target,
                "accuracySource": self.accuracy_source,
                "imageSize": best["image_size"],
                "measured": {k: best[k] for k in ("image_auroc", "latency_ms", "model_kb", "ram_kb")},
                "chosenBy": "highest validation image AUROC among completed trials within the budget "
                "(ties: lower latency)",
            }
            save_with_exports(model, model_dir, self.opts.export, calibration=ds.train.images)


def constants_kb(scorer: Any) -> float:
    """KB of the constants (memory bank, mixture components) a scorer's module bakes into every model file."""
    module = scorer.scoring_module()
    return sum(t.numel() * t.element_size() for t in list(module.buffers()) + list(module.parameters())) / 1024


def leaderboard(trials: list["optuna.trial.FrozenTrial"], budget: Budget) -> list[dict[str, Any]]:
    """Every trial as a row: completed ones within ``budget`` by accuracy, then over it, then the rest."""
    rows = []
    for t in trials:
        a = t.user_attrs
        row = {
            "number": t.number,
            "state": t.state.name,
            "worker": a.get("worker"),
            "reason": a.get("reason"),
            "image_size": a.get("image_size"),
            "fits": False,
            "broken": [],
        }
        for k in (
            "parameters",
            "parameter_line",
            "image_auroc",
            "pixel_auroc",
            "f1",
            "synthetic_image_auroc",
            "test_image_auroc",
            "accuracy_source",
            "latency_ms",
            "model_kb",
            "ram_kb",
            "planner_ram_kb",
            "arena_kb",
            "macs_m",
            "seconds",
            "threshold",
            "repeat_of",
        ):
            row[k] = a.get(k)
        if t.state.name == "COMPLETE":
            row["broken"] = budget.broken(row)
            row["fits"] = not row["broken"]
        rows.append(row)
    rank = {"COMPLETE": 0}
    return sorted(
        rows,
        key=lambda r: (
            rank.get(r["state"], 1),
            not r["fits"],
            -(r["image_auroc"] or 0),
            r["latency_ms"] or 0,
            r["number"],
        ),
    )


def pick_best(trials: list[dict[str, Any]], budget: Budget, strict: bool = True) -> dict[str, Any] | None:
    """The completed trial within ``budget`` with the highest accuracy (ties: lower latency).

    ``strict``: raise one clear error when there is none (naming what kept the closest trial out).
    """
    fits = [t for t in trials if t["state"] == "COMPLETE" and t["fits"]]
    if fits:
        return max(fits, key=lambda t: (t["image_auroc"], -t["latency_ms"]))
    if not strict:
        return None
    done = [t for t in trials if t["state"] == "COMPLETE"]
    if not done:
        failed = [t for t in trials if t["reason"]]
        why = f": trial {failed[0]['number']} ({failed[0]['state'].lower()}): {failed[0]['reason']}" if failed else ""
        raise VadblocksError(f"no trial completed ({len(trials)} in the study){why}")
    closest = min(done, key=lambda t: max(budget.excess(t).values()))
    raise VadblocksError(
        f"no configuration met the budget ({budget.describe()}) in {len(done)} completed trial(s); "
        f"the closest, trial {closest['number']}, has {'; '.join(budget.broken(closest))}. "
        "Raise the limits, pick another --runtime, or fix a smaller configuration "
        "(e.g. --scoring-function gmm)"
    )


def pareto_front(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials no other trial beats on both accuracy (higher) and latency (lower), by latency."""
    trials = [t for t in trials if t.get("repeat_of") is None]  # a repeated configuration is one point
    front = [
        t
        for t in trials
        if not any(
            o["image_auroc"] >= t["image_auroc"]
            and o["latency_ms"] <= t["latency_ms"]
            and (o["image_auroc"], o["latency_ms"]) != (t["image_auroc"], t["latency_ms"])
            for o in trials
        )
    ]
    return sorted(front, key=lambda t: t["latency_ms"])


def write_pareto_png(
    path: Path, trials: list[dict[str, Any]], front: list[dict[str, Any]], budget: Budget, runtime: str
) -> Path:
    """Accuracy against latency of every completed trial, the budget and the Pareto front (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in trials if t["state"] == "COMPLETE" and t.get("repeat_of") is None]
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for fits, colour, label in ((True, "#2b59c3", "within budget"), (False, "#bbbbbb", "over budget")):
        pts = [t for t in done if t["fits"] == fits]
        if pts:
            ax.scatter([t["latency_ms"] for t in pts], [t["image_auroc"] for t in pts], s=22, c=colour, label=label)
    if front:
        ax.step(
            [t["latency_ms"] for t in front],
            [t["image_auroc"] for t in front],
            where="post",
            color="#d1495b",
            lw=1.5,
            label="Pareto front",
        )
        for t in front:
            ax.annotate(
                f"#{t['number']}",
                (t["latency_ms"], t["image_auroc"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    if budget.max_latency_ms is not None:
        ax.axvline(budget.max_latency_ms, ls="--", color="#555", lw=1, label=f"{budget.max_latency_ms:g} ms budget")
    ax.set_xlabel(f"latency, ms ({runtime}, 1 thread, batch 1)")
    ax.set_ylabel("image AUROC (validation)")
    ax.set_title(f"{len(done)} configurations measured")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def table(trials: list[dict[str, Any]], limit: int = 15) -> list[str]:
    """The leaderboard as aligned text lines (best first)."""
    head = (
        f"{'#':>4} {'scorer':<10} {'backbone':<17} {'size':>4} {'AUROC':>6} {'ms':>6} {'KB':>7} {'RAM KB':>7} "
        f"{'MMAC':>6}  fits  settings"
    )
    lines = [head]
    repeats = [t for t in trials if t.get("repeat_of") is not None]
    trials = [t for t in trials if t.get("repeat_of") is None]
    for t in trials[:limit]:
        if t["state"] != "COMPLETE":
            lines.append(f"{t['number']:>4} {t['state'].lower()}: {t['reason'] or ''}"[:150])
            continue
        p = t["parameters"]
        rest = " ".join(
            f"{k}={v}"
            for k, v in p.items()
            if k not in (SCORER_PARAM, "backbone", "threshold-policy", "target-fpr", "validation")
        )
        macs = "-" if t.get("macs_m") is None else f"{t['macs_m']:.1f}"
        lines.append(
            f"{t['number']:>4} {p[SCORER_PARAM]:<10} {p['backbone']:<17} {t['image_size']:>4} "
            f"{t['image_auroc']:>6.3f} {t['latency_ms']:>6.2f} {t['model_kb']:>7.0f} {t['ram_kb']:>7.0f} "
            f"{macs:>6}  {'yes' if t['fits'] else 'no ':<4}  {rest}"
        )
    if len(trials) > limit:
        lines.append(f"... {len(trials) - limit} more in the leaderboard JSON")
    if repeats:
        lines.append(f"({len(repeats)} trial(s) sampled a configuration already measured and copied its figures)")
    return lines
