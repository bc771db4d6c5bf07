"""serve: the HTTP API (optional extra 'api')."""

from __future__ import annotations

import click

from pgsync_dossier.cli import render
from pgsync_dossier.cli.context import AppContext, pass_app
from pgsync_dossier.cli.options import PORT
from pgsync_dossier.errors import UsageError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=PORT, default=8800, show_default=True)
@pass_app
def serve(app: AppContext, host: str, port: int) -> None:
    """Serve the HTTP API: on a Subscriber, /sync/dossier-lists/ (and the web page when web_ui is
    on); on a Leader, the endpoint Subscribers given its web address ask, its lists and metrics."""
    try:
        import uvicorn

        from pgsync_dossier.api import create_app
    except ImportError:
        raise UsageError("the HTTP API needs the 'api' extra: pip install 'pgsync-dossier[api]'") from None
    config = app.config
    render.message(f"serving on http://{host}:{port}/ (OpenAPI at /docs)")
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=True)
