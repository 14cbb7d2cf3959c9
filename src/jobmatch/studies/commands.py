"""`jobmatch study NAME --out DIR [--quick] [--jobs N]`: the CLI face of the study runner (cli.py calls
`register(app)`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("study")
    def study_cmd(
        name: Annotated[str, typer.Argument(help="hiring | qa | activity | intent | ... (jobmatch.studies.NAME)")],
        out: Annotated[Path, typer.Option("--out", help="folder for the points, metrics.json and report.md; "
                                                         "re-running into it resumes")],
        quick: Annotated[bool, typer.Option("--quick", help="the study's small grid (minutes)")] = False,
        jobs: Annotated[int, typer.Option("--jobs", help="points run in parallel processes")] = 1,
    ) -> None:
        """One simulator knob over a grid, several seeds per point: table, plot with 95% bands, conclusion."""
        from jobmatch.studies.runner import load_study, run_study

        def fail(message: str) -> typer.Exit:
            typer.secho(message, fg="red", err=True)
            return typer.Exit(2)

        if jobs < 1:
            raise fail(f"--jobs: must be at least 1, got {jobs}")
        try:
            study = load_study(name)
        except ValueError as e:
            raise fail(str(e)) from None
        started = time.perf_counter()

        def say(msg: str) -> None:
            typer.echo(f"{time.strftime('%H:%M:%S')} [{time.perf_counter() - started:6.0f}s] {msg}", err=True)

        try:
            result = run_study(study, out, quick=quick, jobs=jobs, say=say)
        except (ValueError, RuntimeError) as e:
            raise fail(str(e)) from None
        typer.echo(f"{len(result['rows'])} points x seeds -> {Path(out) / 'report.md'}")
