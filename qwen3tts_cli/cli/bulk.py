"""`qwen3tts bulk`: a manifest in, OUT_DIR/<id>.wav and OUT_DIR/results.jsonl out, in this process
or on a Ray cluster (qwen3tts_cli/bulk)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..errors import InputError, Qwen3TTSError
from .options import QUIET_OPTION, with_groups
from .speech import DEVICE, SPEECH, DeviceOptions, SpeechOptions, speech_request, voice_source

# Failed rows named in the closing error line; the rest are in results.jsonl.
NAMED_FAILURES = 10


class RowsFailed(Qwen3TTSError):
    exit_code = 1


@with_groups
def bulk(
    manifest: Path = typer.Argument(..., metavar="MANIFEST",
                                    help="Rows to speak: .jsonl, .csv or .parquet with 'id' and 'text', optionally "
                                         "'speaker', 'language', 'instruct', 'voice' (a voice file) and 'seed'."),
    out_dir: Path = typer.Option(..., "--dir", "-d", metavar="OUT_DIR",
                                 help="Folder for <id>.wav and results.jsonl (created if missing)."),
    o: SpeechOptions = SPEECH,
    d: DeviceOptions = DEVICE,
    batch_size: int = typer.Option(4, "--batch-size", "-b", min=1,
                                   help="Rows each replica synthesizes at once (dynamic batching)."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="local|auto|ADDRESS",
                                      help="Run on Ray Data: 'local' starts a cluster on this machine, 'auto' joins "
                                           "the one it belongs to, ADDRESS (the head's host:port) joins that one "
                                           "(pip install 'qwen3tts-cli\\[ray]'). Default: this process."),
    replicas: int = typer.Option(1, "--replicas", min=1, help="With --ray: model replicas (actors) in the pool."),
    gpus_per_replica: float = typer.Option(0.0, "--gpus-per-replica", min=0.0, metavar="G",
                                           help="With --ray: GPUs each replica holds (e.g. 1; 0.5 puts two on a "
                                                "GPU). With G > 0 replicas run on CUDA unless --device says else."),
    cpus_per_replica: Optional[float] = typer.Option(
        None, "--cpus-per-replica", min=0.0, metavar="C",
        help="With --ray: CPUs each replica holds, and its torch threads (default: 1 with GPUs; without, "
             "--ray local shares this machine's cores among the replicas, else 1)."),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Synthesize every row of a manifest into OUT_DIR/<id>.wav, with a line per row in OUT_DIR/results.jsonl.

    A row's fields override the command's options. Files are written atomically as rows finish; a rerun skips rows whose file is complete (results.jsonl and SHA-256) and retries failed ones.

    A failing row (unknown speaker, bad voice file, audio cut short by the runaway guard unless --allow-truncation) is recorded with its error and the others go on; the exit status is then 1.
    """
    from ..bulk.job import BulkJob, local_rows, model_key
    from ..bulk.manifest import read_manifest
    from ..bulk.replica import JobSpec
    from ..bulk.results import LOCK_NAME, OutputFolder
    from ..engine.load import model_files, parse_device, parse_precision
    from .app import err
    from .models import resolve_model_with_progress
    from .output import say_to_stderr

    # -- everything that needs no weights, before any load ------------------------------------------
    if ray is None and (replicas != 1 or gpus_per_replica or cpus_per_replica is not None):
        raise InputError("--replicas, --gpus-per-replica and --cpus-per-replica are for --ray")
    job_manifest = read_manifest(manifest)
    out = OutputFolder(out_dir)
    for own in (out.results_path, out.folder / LOCK_NAME):
        if own.exists() and os.path.samefile(manifest, own):  # hard and symbolic links too
            raise InputError(f"{manifest}: is this job's {own.name} in --dir; give the manifest another name or "
                             "place")
    out.check_targets(r.id for r in job_manifest.rows)
    voice = voice_source(o)
    template = speech_request(o, "-", None)  # the defaults, checked once (a row's text replaces it)
    say = say_to_stderr(quiet)
    live = not quiet and err.is_terminal
    cluster = _cluster(ray, replicas, gpus_per_replica, cpus_per_replica) if ray is not None else None
    if cluster is not None:
        from ..bulk.ray_job import import_ray

        import_ray()
    device = d.device if d.device is not None or not gpus_per_replica else "cuda"
    parse_precision(d.dtype)
    if cluster is None or cluster.address == "local":  # the replicas run on this machine: check now
        parse_device(device)
    if job_manifest.ignored_columns:  # once the command line is known to be good
        say(f"[yellow]note:[/] columns not used: {escape(', '.join(job_manifest.ignored_columns))}")
    folder = resolve_model_with_progress(o.model, live, say)
    files = model_files(folder)
    template, voice = _check_defaults(template, voice, files, job_manifest.rows)
    defaults = _defaults(template)
    # A replica elsewhere resolves an official name itself (its own cache); a folder goes as a path.
    model = str(Path(folder).resolve()) if cluster is None or Path(o.model).exists() else o.model
    spec = JobSpec(model=model, device=device, dtype=d.dtype, max_batch=batch_size, defaults=defaults, voice=voice,
                   threads=max(1, int(cluster.cpus_per_replica)) if cluster is not None else None)

    with out:
        job = BulkJob(job_manifest, out, spec, files.model_config(), files.generation(),
                      model_key(Path(folder), d.dtype), o.allow_truncation)
        say(f"{job.total} rows: {job.skipped} already complete, {len(job.refused)} refused, {len(job.todo)} to "
            f"synthesize" + (f" on {cluster.replicas} replica(s) (Ray: {escape(cluster.address)})" if cluster else ""))
        failed, cut, audio_s, count = [], 0, 0.0, 0
        with contextlib.ExitStack() as stack:
            if cluster is not None and job.todo:
                from ..bulk.ray_job import ray_rows, session

                log = Path(tempfile.gettempdir()) / f"qwen3tts-bulk-ray-{os.getpid()}.log"
                stack.enter_context(_ray_output_aside(log))
                stack.enter_context(session(cluster))  # connected (or refused) before any row is written
                made = ray_rows(job.spec, job.todo, cluster)
            else:
                made = local_rows(job.spec, job.todo)
            stack.callback(made.close)  # rows still running stop (Ctrl-C) before Ray disconnects
            t0 = time.perf_counter()
            bar = stack.enter_context(_Progress(live, say, len(job.todo) + len(job.refused)))
            for result in job.run(made):
                count += 1
                audio_s += result.seconds if result.ok else 0.0
                if not result.ok:
                    failed.append(result.id)
                    cut += result.truncated is not None
                    say(f"[red]failed[/] {escape(result.id)}: {escape(result.error)}")
                else:
                    for w in result.warnings + ([result.truncated] if result.truncated else []):
                        say(f"[yellow]warning:[/] {escape(result.id)}: {escape(w)}")
                bar.update(count, audio_s)
        dt = time.perf_counter() - t0
    say(f"{count - len(failed)} written, {job.skipped} skipped, {len(failed)} failed; {audio_s / 3600:.4f} h of "
        f"audio in {dt:.1f} s ({count / max(dt, 1e-9):.2f} rows/s, {audio_s / max(dt, 1e-9):.2f} audio hours "
        f"per hour); results: {escape(str(out.results_path))}")
    if failed:
        named = ", ".join(failed[:NAMED_FAILURES]) + (f" and {len(failed) - NAMED_FAILURES} more"
                                                      if len(failed) > NAMED_FAILURES else "")
        hint = f" ({cut} cut short by the runaway guard: --allow-truncation keeps such audio)" if cut else ""
        raise RowsFailed(f"{len(failed)} of {job.total} rows failed: {named}; their errors are in "
                         f"{out.results_path}{hint}")


def _defaults(template) -> dict:
    """The job's request fields but text and voice, as plain values (they travel to Ray actors)."""
    defaults = {f.name: getattr(template, f.name) for f in fields(template) if f.name not in ("text", "voice")}
    defaults["sampling"] = dict(defaults["sampling"])
    return defaults


def _check_defaults(template, voice, files, rows):
    """The command's own options against the model, as synth checks them: one usage error in the
    command's terms (exit 2) unless every row overrides the option at fault; a row's own bad field
    is that row's failure instead. Returns (template, voice) without the options every row
    overrides and this model refuses (a --ref-audio that every row's speaker replaces is never
    cloned)."""
    from dataclasses import replace

    from ..bulk.manifest import OVERRIDES
    from ..errors import RequestError
    from ..voice.clone import load_voice

    def first(name):  # a row's value standing in for an excused option, so the rest gets checked
        return next((getattr(r, name) for r in rows if getattr(r, name) is not None), None)

    checked, checked_voice = template, voice
    for _ in range(len(OVERRIDES) + 1):
        try:
            replace(checked, voice=checked_voice).resolve(files.model_config(), files.generation())
            break
        except RequestError as e:
            if e.field not in OVERRIDES:
                raise
            # The row fields that put it right: a row's own voice replaces the job's speaker, and
            # its own speaker the job's voice (replica.row_request).
            fixes = {"speaker_unsupported": ("speaker", "voice"), "voice_unsupported": ("voice", "speaker")}.get(
                e.code, (e.field,))
            if any(all(getattr(r, f) is None for f in fixes) for r in rows):
                raise
            if "voice" in fixes and "speaker" in fixes:  # every row brings its own speaker or voice
                voice, template = None, replace(template, speaker=None)
                checked = replace(checked, speaker=first("speaker"))
                checked_voice = None
                if checked.speaker is None:
                    try:
                        checked_voice = load_voice(first("voice"))
                    except (Qwen3TTSError, OSError):
                        break  # the rows' voices fail on their own rows
            elif e.field == "voice":
                voice = None
                try:
                    checked_voice = load_voice(first("voice"))
                except (Qwen3TTSError, OSError):
                    break
            else:
                template = replace(template, **{e.field: None})
                checked = replace(checked, **{e.field: first(e.field)})
    return template, voice


def _cluster(address: str, replicas: int, gpus: float, cpus: float | None):
    from ..bulk.ray_job import Cluster, probe

    address = address.strip()
    if address not in ("local", "auto"):
        probe(address)  # before the model resolves (a download can take a while)
    if cpus is None:
        cpus = 1.0 if gpus or address != "local" else max(1.0, float((os.cpu_count() or 1) // replicas))
    if cpus <= 0 and not gpus:
        raise InputError("--cpus-per-replica must be above 0 for replicas without GPUs")
    return Cluster(address, replicas, gpus, cpus)


@contextlib.contextmanager
def _ray_output_aside(log: Path):
    """Ray talks on its own: its native core writes log lines straight to file descriptor 2 (an "E
    ... core_worker.cc" warning on every actor-pool start, for one), and its driver prints what
    workers report (the traceback of a replica that failed to start, a retried task) on standard
    output. Ray's session logs keep all of it. This command writes nothing to standard output, so
    while Ray runs, descriptors 1 and 2 and sys.stdout go to ``log`` (removed afterwards), and
    sys.stderr, where this command reports, stays on the real standard error."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {1: os.dup(1), 2: os.dup(2)}
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    python_out, python_err = sys.stdout, sys.stderr
    encoding = getattr(python_err, "encoding", None) or "utf-8"
    sys.stderr = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding=encoding, errors="backslashreplace")
    sys.stdout = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    for n in (1, 2):
        os.dup2(fd, n)
    os.close(fd)
    try:
        yield
    finally:
        ours = (sys.stdout, sys.stderr)
        for f in ours:
            f.flush()
        for n in (1, 2):
            os.dup2(saved[n], n)
            os.close(saved[n])
        sys.stdout, sys.stderr = python_out, python_err
        for f in ours:
            f.close()
        log.unlink(missing_ok=True)


class _Progress:
    """Rows done of the rows to do, rows/s, hours of audio made, and time left, on stderr: a live
    bar on a terminal, else a line at most every 10 s."""

    def __init__(self, live: bool, say, total: int):
        self.live, self.say, self.total = live, say, total
        self.bar = self.task = None
        self.t0 = self.last = time.perf_counter()

    def __enter__(self) -> "_Progress":
        if self.live and self.total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from .app import err

            self.bar = Progress(TextColumn("rows"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]:.2f} rows/s, {task.fields[hours]:.3f} h audio, ETA"),
                                TimeRemainingColumn(), console=err, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("rows", total=self.total, rate=0.0, hours=0.0)
        return self

    def update(self, done: int, audio_s: float) -> None:
        now = time.perf_counter()
        rate = done / max(now - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, rate=rate, hours=audio_s / 3600)
        elif now - self.last >= 10 or done == self.total:
            self.last = now
            left = (self.total - done) / rate if rate > 0 else float("inf")
            eta = f"{left:.0f} s" if left != float("inf") else "?"
            self.say(f"{done}/{self.total} rows, {rate:.2f} rows/s, {audio_s / 3600:.4f} h audio, ETA {eta}")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
