"""Start the trame server for ``onfh web`` (the only place that knows trame's start-up details)."""

from __future__ import annotations

import os
from pathlib import Path


def serve(data_dir: Path, first_input: str | None, host: str, port: int, open_browser: bool) -> None:
    """Build the app and serve it until interrupted.

    Args:
        data_dir: the ``--data`` folder (resolved).
        first_input: an image under ``data_dir`` to open first; ``None`` opens the sample hip.
        host, port: where to listen (``port`` 0 picks a free one).
        open_browser: open the system browser on the page.
    """
    # trame parses sys.argv on start (--host, --port, ...); give it only what onfh decided.
    os.environ["TRAME_ARGS"] = ""
    from trame.app import get_server

    from onfh.web.app import OnfhWebApp

    server = get_server("onfh-web", client_type="vue3")
    app = OnfhWebApp(server, data_dir)
    app.start_with(first_input)
    server.start(port=port, host=host, open_browser=open_browser, show_connection_info=True)
