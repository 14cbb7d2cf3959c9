"""The `jobmatch worker` command; `register(app)` adds it to the main CLI."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from jobmatch.config import Settings


def worker_cmd(ctx: typer.Context,
               once: Annotated[bool, typer.Option("--once", help="apply what is queued, then exit")] = False,
               batch: Annotated[int, typer.Option("--batch", min=1, help="entries per delivery")] = 5000,
               block_ms: Annotated[int, typer.Option("--block-ms", min=0, help="how long one read waits for new "
                                                                                "entries (milliseconds)")] = 1000,
               consumer: Annotated[str, typer.Option(help="this worker's name in the consumer group (Redis); a "
                                                          "restarted worker with the same name resumes its pending "
                                                          "entries")] = "worker") -> None:
    """Apply queued events (JOBMATCH_STREAM, or the embedded inbox) to the log, activity embeddings and hirer
    counts, until stopped (SIGTERM/SIGINT finish the current batch first)."""
    from jobmatch.nearline.queue import QueueUnavailable
    from jobmatch.nearline.worker import Worker

    settings = _settings(ctx)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        worker = Worker(settings, consumer=consumer, batch=batch, block_ms=block_ms)
    except (QueueUnavailable, ValueError) as e:
        typer.secho(str(e), fg="red", err=True)
        raise typer.Exit(2) from None
    try:
        worker.run(once=once, stop=stop)
    finally:
        worker.close()


def _settings(ctx: typer.Context) -> Settings:
    # the main CLI's global --home wins over JOBMATCH_HOME (read from the parent command: the CLI module sits
    # above this layer and is not imported)
    home = ctx.parent.params.get("home") if ctx.parent is not None else None
    return Settings(home=home) if home else Settings()


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_cmd)
