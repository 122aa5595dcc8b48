"""``mreg serve``: the read-only web UI, and the store served to other mreg clients."""

from __future__ import annotations

import socket

import click

from mreg.cli.app import Session, fail, pass_session
from mreg.cli.errors import ExitCode
from mreg.errors import InvalidInputError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option(
    "--registry",
    "registry_path",
    metavar="PATH",
    type=click.Path(file_okay=False, path_type=str),
    help="The registry to serve (default: as for every command).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="The port (0: any free one).")
@click.option(
    "--allow-host",
    "allowed_hosts",
    metavar="NAME",
    multiple=True,
    help="Also answer requests for this host name (repeatable), e.g. the name clients or a proxy use.",
)
@pass_session
def serve(session: Session, registry_path: str | None, host: str, port: int, allowed_hosts: tuple[str, ...]) -> None:
    """Browse the registry in a web browser, and serve it to mreg clients.

    The UI is read-only: models, versions with their metrics and charts, lineage,
    and comparisons. The same address serves the store itself, so
    'mreg clone http://HOST:PORT DIR', 'mreg pull' and fallbacks work against it.
    Only requests naming this server are answered (127.0.0.1, localhost, [::1]
    and the --host, with the port; and each --allow-host NAME), so that no web
    page can read the registry through a name of its own. Stop with Ctrl-C.
    """
    try:
        import uvicorn  # start-up: the web stack, only for serve

        from mreg.web.app import create_app  # start-up: the web stack, only for serve
        from mreg.web.hosts import HostPolicy
    except ImportError as exc:
        fail(
            f"mreg serve needs the web extra (missing {exc.name}): pip install -e '.[serve]' in mreg's checkout "
            "(requirements.txt includes it)",
            ExitCode.FAILURE,
        )
    registry = Session(registry_path).registry if registry_path else session.registry
    try:
        HostPolicy(host, port, allowed_hosts)  # the names are checked before anything listens
    except InvalidInputError as exc:
        fail(f"--host or --allow-host: {exc.message}", ExitCode.USAGE)
    listener = _listen(host, port)
    hosts = HostPolicy(host, listener.getsockname()[1], allowed_hosts)  # port 0: the one picked
    if host not in LOCAL_HOSTS:
        click.echo(
            f"mreg: warning: listening on {host}: the web UI has no authentication; anyone who can reach "
            "this address can read every model (it is read-only)",
            err=True,
        )
        click.echo(f"mreg: answering requests for {', '.join(hosts.names())} only (add names with --allow-host NAME)", err=True)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving {registry.root} at http://{shown}:{hosts.port}/ (Ctrl-C to stop)", nl=True)
    config = uvicorn.Config(
        create_app(registry.root, hosts=hosts), log_level="warning", access_log=False, server_header=False, proxy_headers=False
    )
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled: stopping is how serving ends
    click.echo("stopped")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound now so that errors are reported before serving and port 0 works."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", ExitCode.FAILURE)
    listener.listen(128)
    return listener
