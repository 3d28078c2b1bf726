"""Performance benchmark: the original scripts' training path against the project's fast path.

    python -m defectseg.benchmarks.perf.benchmark                              # UAPS + supervised, 128px 8+8 and 256px 16+16
    python -m defectseg.benchmarks.perf.benchmark --device cuda --out results/perf_cuda
    python -m defectseg.benchmarks.perf.benchmark --configs 128:8:8 --variants bf16+cl fp32+cl   # extra fast variants
    python -m defectseg.benchmarks.perf.benchmark --paper-run 120 --device cuda  # UAPS, NEU-Seg 256px 16+16, 120 s

For each method and configuration (image side, labelled + unlabelled images per step) it builds
one reference path and one or more fast paths (``benchmarks.perf.paths``) from the same initial
weights and runs their steps interleaved (reference, fast, fast, reference, ...) in one process,
so that drift of a shared machine hits every path alike; it reports medians over the timed steps.
Per path: ms per step, images/s, ms per step spent getting the batch and its share, FLOPs of a
step (forward + backward) and the rate they are done at beside the measured matrix-product rate,
eval ms per image for ``predict`` and for ``predict_variants`` (UAPS: every decoder from one
encoder pass, i.e. the ensemble) and their FLOP ratio, and the memory one step needs above the
resident model. Per comparison: the median ratio, the range of ratios of blocks timed next to each
other, and the speed-up the fast path would reach at the measured matrix-product rate. A path
whose timed steps still got faster (``step_drift``) is named as still warming up.
Writes ``perf.csv`` (one row per path), ``perf.md`` and ``perf.json`` (with the machine) to --out.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from defectseg.datasets.atomic import atomic_open
from defectseg.datasets.cache import load_arrays
from defectseg.datasets.transforms import to_float
from defectseg.methods import Method, available_methods, build_method

from defectseg.benchmarks.engine.config import PROFILE_DEFAULTS
from defectseg.benchmarks.engine.environment import environment, matmul_tflops, resolve_device
from defectseg.benchmarks.engine.run import TrainSettings
from defectseg.benchmarks.engine.io import write_json
from defectseg.benchmarks.perf.data import PerfImages, perf_images
from defectseg.benchmarks.perf.paths import (
    FastPath,
    FastVariant,
    PeakMemory,
    PerfConfig,
    ReferencePath,
    StepTiming,
    TrainingPath,
    eval_flops,
    median,
    parse_variant,
    release_freed_memory_to_os,
    release_unused_memory,
    step_flops,
    timed_call,
    timed_steps,
)

DEFAULT_METHODS = ("uaps", "supervised")
DEFAULT_CONFIGS = ("128:8:8", "256:16:16")
RAMP_TOTAL_STEPS = 10_000  # total_steps given to training_step (only ramp-up weights depend on it)
# per device type: timed steps, steps per timed block, warm-up steps, eval images, eval repeats, matmul side
# CPU warm-up: at 256px in float32 the first steps page-fault in ~12 GB (millions of faults per step on a
# virtual machine) and glibc's heap settles only after ~6 steps (docs/performance.md)
DEVICE_DEFAULTS = {"cpu": (6, 1, 6, 16, 3, 2048), "cuda": (40, 5, 5, 64, 5, 8192)}
DRIFT_WARNING = 1.10  # first-half / second-half median step time above which a path was still warming up


def parse_config(text: str) -> PerfConfig:
    """``SIZE:LABELLED:UNLABELLED``, e.g. ``128:8:8``."""
    try:
        size, labeled, unlabeled = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"configuration {text!r} must be SIZE:LABELLED:UNLABELLED, e.g. 128:8:8") from None
    if size < 16 or labeled < 1 or unlabeled < 1:
        raise argparse.ArgumentTypeError(f"configuration {text!r}: need SIZE >= 16 and at least one labelled and one unlabelled image")
    return PerfConfig(size, labeled, unlabeled)


def resolve_methods(names: list[str] | None) -> list[str]:
    """The methods to measure: ``names``; "all" = every registered, UAPS and supervised first; default UAPS then supervised."""
    registered = available_methods()
    if names == ["all"]:
        first = [name for name in DEFAULT_METHODS if name in registered]
        return first + [name for name in registered if name not in first]
    if names is None:
        missing = [name for name in DEFAULT_METHODS if name not in registered]
        if missing:
            print(f"note: {missing} not registered; measuring {[n for n in DEFAULT_METHODS if n in registered]}", file=sys.stderr)
        return [name for name in DEFAULT_METHODS if name in registered]
    unknown = [name for name in names if name not in registered]
    if unknown:
        raise SystemExit(f"error: unknown method(s) {unknown}; registered: {registered}")
    return names


def machine_info(device: torch.device) -> dict[str, Any]:
    return {
        **environment(device),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def fast_arrays(images: PerfImages, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The fast path's uint8 tensors: labelled images, their masks, unlabelled images (decoded once)."""
    labeled = load_arrays(images.dataset, images.labeled, size, None)
    unlabeled = load_arrays(images.dataset, images.unlabeled, size, None)
    return torch.from_numpy(labeled.images), torch.from_numpy(labeled.masks), torch.from_numpy(unlabeled.images)


class Bench:
    """Measures every path of one (method, configuration)."""

    def __init__(
        self, method: str, config: PerfConfig, images: PerfImages, variants: list[FastVariant], train: dict[str, Any],
        device: torch.device, args: argparse.Namespace,
    ) -> None:
        self.method_name, self.config, self.images, self.variants = method, config, images, variants
        self.train, self.device, self.args = train, device, args
        self.arrays = fast_arrays(images, config.size)
        torch.manual_seed(args.seed)
        self.initial_state = copy.deepcopy(self._build().state_dict())

    def _build(self) -> Method:
        method = build_method(self.method_name, {}, self.images.dataset.in_channels, self.images.dataset.num_classes)
        return method.train()

    def fresh_method(self) -> Method:
        method = self._build()
        method.load_state_dict(self.initial_state)
        return method

    def paths(self, steps: int, workers: int) -> list[TrainingPath]:
        reference = ReferencePath(self.fresh_method(), self.images, self.config, self.train, self.device, steps, workers, self.args.seed)
        fast = [FastPath(self.fresh_method(), v, self.arrays, self.config, self.train, self.device, self.args.seed) for v in self.variants]
        return [reference, *fast]

    def measure(self) -> list[dict[str, Any]]:
        args = self.args
        blocks = max(1, args.steps // args.block)
        paths = self.paths(args.warmup + blocks * args.block, args.workers)
        timings: dict[str, list[StepTiming]] = {path.name: [] for path in paths}
        losses: dict[str, float] = {}
        try:
            for step in range(args.warmup):
                for path in paths if step % 2 == 0 else paths[::-1]:
                    timed_steps(path, step, 1, RAMP_TOTAL_STEPS, self.device)
            for block in range(blocks):
                for path in paths if block % 2 == 0 else paths[::-1]:
                    first = args.warmup + block * args.block
                    timing, step_losses = timed_steps(path, first, args.block, RAMP_TOTAL_STEPS, self.device)
                    timings[path.name].append(timing)
                    losses[path.name] = float(step_losses["loss"].detach())
            eval_counts = eval_flops(self.fresh_method().to(self.device), to_float(self.arrays[0][:1]).to(self.device))
            evals = self.eval_times(paths, has_variants=eval_counts["variants"] > 0)
            flops = step_flops(self.fresh_method().to(self.device), paths[-1].next_batch(), RAMP_TOTAL_STEPS)
        finally:
            for path in paths:
                path.close()
        return [self.row(path, timings[path.name], losses[path.name], evals[path.name], flops, eval_counts) for path in paths]

    def eval_times(self, paths: list[TrainingPath], has_variants: bool) -> dict[str, dict[str, float]]:
        """Median ms per image of ``predict`` and (where the method has any) ``predict_variants`` for each path, interleaved."""
        images = torch.cat([self.arrays[0], self.arrays[2]])[: self.args.eval_images]
        kinds = ["main"] + (["variants"] if has_variants else [])
        samples: dict[tuple[str, str], list[float]] = {}
        for path in paths:
            path.method.eval()
        try:
            for repeat in range(self.args.eval_repeats + 1):  # the first round warms up
                for path in paths if repeat % 2 == 0 else paths[::-1]:
                    for kind in kinds:
                        seconds = timed_call(lambda: path.predict(images, kind == "variants"), self.device)
                        if repeat > 0:
                            samples.setdefault((path.name, kind), []).append(seconds)
        finally:
            for path in paths:
                path.method.train()
        return {
            path.name: {kind: 1000 * median(samples.get((path.name, kind), [])) / len(images) for kind in ("main", "variants")}
            for path in paths
        }

    def row(
        self, path: TrainingPath, timings: list[StepTiming], loss: float, evals: dict[str, float], flops: int, eval_counts: dict[str, int],
    ) -> dict[str, Any]:
        step_times = [t.step_s for t in timings]
        step_s = median(step_times)
        variant = getattr(path, "variant", None)
        achieved = flops / step_s / 1e12
        matmul = self.args.matmul_tflops[path.precision]
        return {
            "method": self.method_name,
            "config": self.config.name,
            "path": path.name,
            "precision": path.precision,
            "channels_last": bool(variant and variant.channels_last),
            "compile": bool(variant and variant.compile),
            "step_ms": 1000 * step_s,
            "step_ms_min": 1000 * min(step_times),
            "step_ms_blocks": [round(1000 * t, 3) for t in step_times],  # in timing order, for paired ratios
            "step_drift": step_drift(step_times),
            "images_per_s": self.config.images_per_step / step_s,
            "data_ms": 1000 * median([t.data_s for t in timings]),
            "data_share": sum(t.data_s for t in timings) / sum(step_times),
            "gflop_per_step": flops / 1e9,
            "achieved_tflops": achieved,
            "matmul_share": achieved / matmul,
            "step_ms_at_matmul_rate": 1000 * flops / (matmul * 1e12),
            "eval_main_ms_per_image": evals["main"],
            "eval_ensemble_ms_per_image": evals["variants"],
            "ensemble_vs_main": evals["variants"] / evals["main"],
            "eval_main_gflop_per_image": eval_counts["main"] / 1e9,
            "eval_ensemble_gflop_per_image": eval_counts["variants"] / 1e9 or math.nan,
            "final_loss": loss,
            "steps_timed": len(timings),
        }

    def memory(self) -> dict[str, float]:
        """Memory one step needs above the resident state, per path (second step; workers off)."""
        paths = self.paths(3, workers=0)
        peaks = {}
        try:
            for path in paths:
                timed_steps(path, 0, 1, RAMP_TOTAL_STEPS, self.device)
                with PeakMemory(self.device) as peak:
                    timed_steps(path, 1, 1, RAMP_TOTAL_STEPS, self.device)
                peaks[path.name] = peak.peak_mib
        finally:
            for path in paths:
                path.close()
        return peaks


def step_drift(step_s: list[float]) -> float:
    """Median step time of the first half of the timed blocks over that of the second half.

    About 1 when the path was warm; clearly above 1 when its steps were still getting faster
    (allocator warm-up, page faults), which makes its median too slow.
    """
    half = len(step_s) // 2
    if half == 0:
        return math.nan
    return median(step_s[:half]) / median(step_s[-half:])


def paired_speedup_range(reference_ms: list[float], fast_ms: list[float]) -> dict[str, float]:
    """Lowest and highest reference / fast ratio of blocks timed next to each other (block i of each path).

    The paths run interleaved, so the i-th blocks share the machine's state at that moment; the
    spread of these ratios shows how far the median ratio can be trusted on a noisy machine.
    """
    ratios = [r / f for r, f in zip(reference_ms, fast_ms)]
    return {"speedup low": min(ratios, default=math.nan), "speedup high": max(ratios, default=math.nan)}


def comparison_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Each fast path beside the reference of its (method, configuration), with the ratios."""
    reference = rows[rows.path == "reference"].set_index(["method", "config"])
    out = []
    for _, fast in rows[rows.path != "reference"].iterrows():
        ref = reference.loc[(fast.method, fast.config)]
        out.append({
            "method": fast.method,
            "config": fast.config,
            "fast path": fast.path,
            "ref step ms": ref.step_ms,
            "fast step ms": fast.step_ms,
            "step speedup": ref.step_ms / fast.step_ms,
            **paired_speedup_range(ref.step_ms_blocks, fast.step_ms_blocks),
            "speedup at matmul rate": ref.step_ms / fast.step_ms_at_matmul_rate,
            "fast img/s": fast.images_per_s,
            "ref eval ms/img": ref.eval_main_ms_per_image,
            "fast eval ms/img": fast.eval_main_ms_per_image,
            "eval speedup": ref.eval_main_ms_per_image / fast.eval_main_ms_per_image,
            "fast ensemble/main": fast.ensemble_vs_main,
            "ensemble/main FLOPs": fast.eval_ensemble_gflop_per_image / fast.eval_main_gflop_per_image,
            "ref data %": 100 * ref.data_share,
            "fast data %": 100 * fast.data_share,
            "fast TFLOP/s": fast.achieved_tflops,
            "fast % matmul": 100 * fast.matmul_share,
            "ref peak MiB": ref.get("peak_step_mib", math.nan),
            "fast peak MiB": fast.get("peak_step_mib", math.nan),
        })
    return pd.DataFrame(out)


def format_table(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda x: f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}")


def _json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))  # NaN -> null


def write_results(out: Path, rows: pd.DataFrame, table: pd.DataFrame, meta: dict[str, Any]) -> None:
    """perf.csv, perf.json and perf.md, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "perf.csv", "w") as handle:
        rows.to_csv(handle, index=False)
    write_json(out / "perf.json", {**meta, "comparison": _json_records(table), "rows": _json_records(rows)})
    machine = meta["machine"]
    lines = [
        "# Performance: reference vs fast training path",
        "",
        *([] if meta["complete"] else [
            f"**Partial**: {len(rows.groupby(['method', 'config']))} of {meta['benches']} (method, configuration) pairs "
            "measured so far; the run is still going or was stopped. No peak memory yet.",
            "",
        ]),
        f"- machine: {machine['host']}, {machine['device']}, {machine['cpu']} ({machine['cpu_count']} cores, "
        f"torch {machine['torch']}, {machine['torch_threads']} threads); load average {machine['load_average_at_start']} at start, "
        f"{meta['load_average_at_end']} at end",
        f"- data: {meta['data_source']}",
        "- measured matrix-product rate: " + ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in meta["matmul_tflops"].items()),
        f"- {meta['settings']['steps']} timed steps per path after {meta['settings']['warmup']} warm-up steps, interleaved; medians",
        "- still warming up while timed (first half of the steps > "
        f"{DRIFT_WARNING:.2f}x slower than the second): {', '.join(meta['settings']['still_warming']) or 'none'}",
        "",
        "## Comparison",
        "",
        "```",
        format_table(table),
        "```",
        "",
        "## Every path",
        "",
        "```",
        format_table(rows),
        "```",
        "",
    ]
    with atomic_open(out / "perf.md", "w") as handle:
        handle.write("\n".join(lines))


def summarise(results: list[dict[str, Any]], meta: dict[str, Any], out: Path, complete: bool) -> pd.DataFrame:
    """Rows and comparison of everything measured so far, written to ``out``; the comparison table.

    Called after every (method, configuration), so a run that is stopped or runs out of memory
    keeps what it measured (marked partial), and once more at the end with peak memory.
    """
    rows = pd.DataFrame(results)
    warming = rows[rows.step_drift > DRIFT_WARNING]
    still_warming = [f"{row.method} {row.config} {row.path}" for row in warming.itertuples()]
    if complete:
        for name, drift in zip(still_warming, warming.step_drift):
            print(
                f"note: {name}: its first timed steps were {drift:.2f}x slower than its last; it was still warming up (raise --warmup)",
                file=sys.stderr,
            )
    meta["settings"]["still_warming"] = still_warming
    meta.update(load_average_at_end=[round(x, 2) for x in os.getloadavg()], complete=complete)
    table = comparison_table(rows)
    write_results(out, rows, table, meta)
    return table


def run_benchmark(args: argparse.Namespace, device: torch.device) -> pd.DataFrame:
    train = dataclasses.asdict(TrainSettings.of(PROFILE_DEFAULTS["train"]).resolved(device))
    variants = [parse_variant("", train)] + [parse_variant(spec, train) for spec in args.variants]
    methods = resolve_methods(args.methods)
    size = args.matmul_size or DEVICE_DEFAULTS[device.type][-1]
    args.matmul_tflops = {name: matmul_tflops(device, dtype, size) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    meta: dict[str, Any] = {
        "machine": machine_info(device),
        "matmul_tflops": args.matmul_tflops,
        "benches": len(methods) * len(args.configs),
        "settings": {
            "steps": args.steps, "block": args.block, "warmup": args.warmup, "eval_images": args.eval_images, "eval_repeats": args.eval_repeats,
            "reference_workers": args.workers, "variants": [v.name for v in variants], "methods": methods,
            "configs": [c.name for c in args.configs], "train_defaults": train,
        },
    }
    print(f"matrix-product rate on {meta['machine']['device']}: {args.matmul_tflops} TFLOP/s", flush=True)
    benches, results, sources = [], [], set()
    with tempfile.TemporaryDirectory(prefix="perf_standin_") as standin:
        for config in args.configs:
            images = perf_images(args.data_root, 2 * config.labeled, 2 * config.unlabeled, Path(standin))
            sources.add(images.source)
            meta["data_source"] = "; ".join(sorted(sources))
            for method in methods:
                print(f"{method} @ {config.name} ...", flush=True)
                release_unused_memory()
                bench = Bench(method, config, images, variants, train, device, args)
                results += bench.measure()
                benches.append(bench)
                summarise(results, meta, args.out, complete=False)
        if args.memory:
            if device.type == "cpu" and not release_freed_memory_to_os():
                print("note: glibc mallopt unavailable; CPU peak memory may be under-reported", file=sys.stderr)
            peaks = {}
            for bench in benches:
                for path, mib in bench.memory().items():
                    peaks[(bench.method_name, bench.config.name, path)] = mib
            for row in results:
                row["peak_step_mib"] = peaks[(row["method"], row["config"], row["path"])]
    table = summarise(results, meta, args.out, complete=True)
    print(format_table(table), flush=True)
    print(f"written: {args.out / 'perf.csv'}, perf.md, perf.json", flush=True)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m defectseg.benchmarks.perf.benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--methods", nargs="+", default=None,
        help=(
            f"registered methods, or 'all' (every one, {' and '.join(DEFAULT_METHODS)} first; "
            f"default: {' '.join(DEFAULT_METHODS)} where registered)"
        ),
    )
    parser.add_argument(
        "--configs", nargs="+", type=parse_config, default=[parse_config(c) for c in DEFAULT_CONFIGS], metavar="SIZE:L:U",
        help=f"image side : labelled : unlabelled images per step (default: {' '.join(DEFAULT_CONFIGS)})",
    )
    parser.add_argument(
        "--variants", nargs="*", default=[], metavar="SPEC",
        help="extra fast paths beside the default one, '+'-joined from: fp32 bf16 cl nocl compile device-data cudnn-bench (e.g. bf16+cl)",
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per path (default: 6 on CPU, 40 on CUDA)")
    parser.add_argument(
        "--block", type=int, default=None, help="steps timed as one block, synchronised only around it (default: 1 on CPU, 5 on CUDA)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per path first (default: 6 on CPU, 5 on CUDA)")
    parser.add_argument("--eval-images", type=int, default=None, help="images per eval timing (default: 16 on CPU, 64 on CUDA)")
    parser.add_argument("--eval-repeats", type=int, default=None, help="timed eval rounds (default: 3 on CPU, 5 on CUDA)")
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers of the reference path (default: min(4, cores))"
    )
    parser.add_argument(
        "--matmul-size", type=int, default=None, help="side of the timed square matrix product (default: 2048 on CPU, 8192 on CUDA)"
    )
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory pass")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument(
        "--data-root", type=Path, default=None,
        help="folder holding NEU_data/ (default: $DEFECTSEG_DATA_ROOT, else ../shared/data; synthetic stand-ins if absent)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, samplers and flips (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("results/perf"), help="output folder (default: results/perf)")
    parser.add_argument(
        "--paper-run", type=float, default=None, metavar="SECONDS",
        help="instead: train UAPS on NEU-Seg at 256px, 16+16 per step, for SECONDS with the runner's fast path; report iterations/s",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, block, warmup, eval_images, eval_repeats, _ = DEVICE_DEFAULTS[device.type]
    args.steps = args.steps or steps
    args.block = args.block or block
    args.warmup = warmup if args.warmup is None else args.warmup
    args.eval_images = args.eval_images or eval_images
    args.eval_repeats = args.eval_repeats or eval_repeats
    started = time.perf_counter()
    if args.paper_run is not None:
        from defectseg.benchmarks.perf.extras import paper_run

        paper_run(args.paper_run, device, args.data_root, args.out)
    else:
        run_benchmark(args, device)
    print(f"took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
