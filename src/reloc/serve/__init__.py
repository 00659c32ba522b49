"""``reloc serve``: a local web page (and HTTP API) where an analyst examines suspicious images.

:func:`serve` is what the command runs: it makes the server's temporary work folder (or
uses ``--keep DIR``), loads the models, runs uvicorn until interrupted and removes the
folder on exit: after Ctrl-C (SIGINT), ``kill`` / ``docker stop`` / systemd (SIGTERM) and a
closed terminal (SIGHUP) alike. The app itself is :func:`reloc.serve.app.create_app`.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def bind_warning(host: str, token: str | None) -> str | None:
    """The warning printed when serving beyond this machine, or ``None`` on loopback."""
    if host in LOOPBACK_HOSTS:
        return None
    advice = "" if token else " Anyone who can reach it can upload images and read results: pass --token."
    return f"warning: serving on {host}, reachable from other machines, not just this one.{advice}"


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
"""Signals that stop the server as Ctrl-C does (its work folder removed)."""


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Make :data:`STOP_SIGNALS` end the block by ``SystemExit(128 + signal)``, so ``finally``
    blocks run (the default action kills the process on the spot).

    While uvicorn serves it handles SIGTERM itself (a graceful shutdown) and raises it again
    once stopped, which lands here; a SIGHUP then is turned into that SIGTERM.
    """

    first: list[int] = []

    def stop(number: int, _frame) -> None:
        first.append(number)
        if number != signal.SIGTERM and signal.getsignal(signal.SIGTERM) is not stop:
            signal.raise_signal(signal.SIGTERM)  # uvicorn is serving: its graceful shutdown
            return
        raise SystemExit(128 + first[0])

    try:
        previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals are not ours to handle
        previous = {}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def serve(
    models,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    keep: Path | None = None,
    log_level: str = "info",
    **settings,
) -> None:
    """Run the server until interrupted (Ctrl-C, SIGTERM or SIGHUP; the latter two exit with 128 + the signal).

    Args:
        models: the :class:`reloc.serve.models.ModelSet` to serve.
        host, port: where to listen; a host other than loopback prints :func:`bind_warning`.
        token: required as ``Authorization: Bearer`` on every API request.
        keep: use this folder as the work folder and keep it on exit; ``None``: a new
            temporary folder, removed on exit.
        log_level: uvicorn's.
        settings: the other fields of :class:`reloc.serve.app.ServeSettings`.
    """
    import uvicorn

    from reloc.serve.app import ServeSettings, create_app

    warning = bind_warning(host, token)
    if warning:
        print(warning, file=sys.stderr)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    work = keep if keep is not None else Path(tempfile.mkdtemp(prefix="reloc-serve-"))
    spool = work / "spool"
    spool.mkdir(exist_ok=True)
    previous, tempfile.tempdir = tempfile.tempdir, str(spool)  # large uploads spool here, not in /tmp
    try:
        with stopped_by_signals():
            app = create_app(models, ServeSettings(work=work, token=token, **settings))
            print(
                f"reloc serve: http://{'[' + host + ']' if ':' in host else host}:{port}/ (work folder {work})",
                file=sys.stderr,
            )
            uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        tempfile.tempdir = previous
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
