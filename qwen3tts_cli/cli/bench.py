"""`qwen3tts bench`: speed and memory of one model on one device (the measuring is in bench/)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape

from .app import err
from .options import QUIET_OPTION, comma_counts
from .output import print_stdout


def bench(
    model: str = typer.Option(..., "--model", "-m",
                              help="Model folder, or an official repo id / short name (e.g. 0.6B-CustomVoice)."),
    random_weights: bool = typer.Option(False, "--random-weights",
                                        help="Random weights at the model's real shapes, built in memory from "
                                             "its config (an official name works offline): no download."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, "--dtype",
                                        help="float32, bfloat16; on CPU also w8a8 (int8 weights and "
                                             "activations: fastest) or int8 (int8 weights, bf16 "
                                             "activations). Default: float32 on CPU, bfloat16 on CUDA."),
    frames: int = typer.Option(25, "--frames", "-n", help="Timed frames (EOS suppressed; at least 3)."),
    batch: int = typer.Option(1, "--batch", "-b", help="Streams generated together."),
    concurrency: Optional[str] = typer.Option(None, "--concurrency", metavar="N,N,…",
                                              help="Also serve N requests at once through the scheduler (dynamic "
                                                   "batching), arriving 0.1 s apart, for each N: aggregate x real "
                                                   "time, frames/s and time to first audio p50/p95."),
    warmup: int = typer.Option(3, "--warmup", help="Warm-up frames before timing."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: torch's choice)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of the report."),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Measure speed and memory: ms per frame (talker, code predictor, codec, host), x real time,
    time to first audio, load and capture time, peak memory, share of the memory-bandwidth floor."""
    from ..bench.speed import run_bench, summary_lines, to_json

    result = run_bench(model, random_weights=random_weights, device=device, dtype=dtype, frames=frames,
                       batch=batch, warmup=warmup, threads=threads, concurrency=comma_counts(concurrency, "--concurrency"))
    if json_out:
        print_stdout(to_json(result) + "\n")
    elif not quiet:  # the report is notes on stderr; --json is the result on stdout
        for line in summary_lines(result):
            err.print(escape(line), soft_wrap=True)
