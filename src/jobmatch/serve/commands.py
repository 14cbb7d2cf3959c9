"""`jobmatch serve` and `jobmatch keys create|list|revoke`; `register(app)` adds them to the CLI.

Both work in the home folder the CLI's global `--home` (or JOBMATCH_HOME) names: `serve` answers from its event
log and store, `keys` manages HOME/keys.sqlite.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from jobmatch.config import Settings
from jobmatch.serve.auth import keys_file
from jobmatch.serve.keys import SCOPES, KeyProblem, KeyStore

keys_app = typer.Typer(no_args_is_help=True, help="API keys for `jobmatch serve` (stored hashed in HOME/keys.sqlite).")


def _settings(ctx: typer.Context) -> Settings:
    """Settings for the home folder the root command's --home named (else JOBMATCH_HOME)."""
    home = ctx.find_root().params.get("home")
    return Settings(home=home) if home else Settings()


def _keys(ctx: typer.Context) -> KeyStore:
    s = _settings(ctx)
    return KeyStore(keys_file(s.home, s.keys_path))


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg="red", err=True)
    return typer.Exit(2)


@keys_app.command("create")
def keys_create(ctx: typer.Context,
                scope: Annotated[str, typer.Option(help=f"one of {', '.join(SCOPES)}")],
                company: Annotated[Optional[int], typer.Option(help="the company a hirer key is bound to")] = None,
                label: Annotated[str, typer.Option(help="a note saying who the key is for")] = "") -> None:
    """Create a key; the key itself is printed once, on the last line (only its hash is stored)."""
    store = _keys(ctx)
    try:
        token, key = store.create(scope, company, label)
    except KeyProblem as e:
        raise _fail(str(e)) from None
    finally:
        store.close()
    typer.echo(f"key {key.key_id}: scope {key.scope}" + (f", company {key.company_id}" if key.company_id is not None
                                                          else "") + " (shown once; store it now)")
    typer.echo(token)


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """Every key (id, scope, company, label, created, revoked) as JSON lines; never the key itself."""
    store = _keys(ctx)
    try:
        for key in store.list():
            typer.echo(json.dumps(key.as_dict()))
    finally:
        store.close()


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="the key id (keys list)")]) -> None:
    """Revoke a key; a running server refuses it within a few seconds."""
    store = _keys(ctx)
    try:
        key = store.revoke(key_id)
    except KeyProblem as e:
        raise _fail(str(e)) from None
    finally:
        store.close()
    typer.echo(f"key {key.key_id} revoked")


def serve(ctx: typer.Context,
          host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
          workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1) -> None:
    """Serve the HTTP API (docs at /docs) and the explorer pages (/ui/) from the home folder's log and store."""
    import uvicorn

    settings = _settings(ctx)
    # the app factory reads its settings from the environment, in every worker process
    os.environ["JOBMATCH_HOME"] = str(Path(settings.home).absolute())
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="jobmatch-metrics-")
    typer.echo(f"jobmatch explorer: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/ui/  "
               f"(API docs: /docs; sign in with a key from `jobmatch keys create`)")
    # the explorer's app is the API's app with the /ui/ pages mounted (jobmatch.web sits above jobmatch.serve)
    uvicorn.run("jobmatch.web.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
