"""The ``mreg`` command group: global options, registry lookup and error handling.

Commands live in :mod:`porcelain` and :mod:`plumbing`; each parses its arguments,
makes one library call and prints. Every failure becomes one line on stderr,
``mreg: error: ...``, and the exit code of the error's class (see the README).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from mreg._version import __version__
from mreg.cli.errors import ExitCode, exit_code, message
from mreg.errors import MregError, RegistryNotFoundError
from mreg.registry import Registry
from mreg.text import safe


class Session:
    """Per-invocation state: where the registry is, opened on first use."""

    def __init__(self, registry_path: str | None) -> None:
        self.registry_path = registry_path
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry.open(self.registry_path)
        return self._registry

    @property
    def registry_if_any(self) -> Registry | None:
        """The registry, or None where there is none (commands on a bucket need none)."""
        try:
            return self.registry
        except RegistryNotFoundError:
            return None


pass_session = click.make_pass_decorator(Session, ensure=True)
"""Decorator: pass the invocation's :class:`Session` (``session.registry`` opens the store)."""


def fail(message: str, code: int) -> NoReturn:
    """Print the one-line error and exit."""
    first_line = " ".join(message.split())
    click.echo(f"mreg: error: {safe(first_line)}", err=True)
    sys.exit(code)


# Where each command lives, as "module:function" in mreg.cli. A command's module is
# imported only when it runs (Click's lazy-loading pattern), so that a quick command
# such as `mreg show` does not pay for the import of all the others.
COMMANDS = {
    "init": "porcelain:init",
    "add": "porcelain:add",
    "tag": "porcelain:tag",
    "rm": "porcelain:rm",
    "show": "porcelain:show",
    "ls": "porcelain:list_models",
    "log": "porcelain:log",
    "note": "porcelain:note",
    "export": "plumbing:export",
    "resolve": "plumbing:resolve",
    "path": "plumbing:path",
    "cat-file": "plumbing:cat_file",
    "hash-object": "plumbing:hash_object",
    "fsck": "plumbing:fsck",
    "gc": "plumbing:gc",
    "pack": "plumbing:pack",
    "diff": "analysis:diff",
    "du": "analysis:du",
    "config": "remote:config",
    "pull": "remote:pull",
    "push": "remote:push",
    "clone": "remote:clone",
    "update-server-info": "remote:update_server_info",
    "serve": "serve:serve",
    "sign": "evidence:sign",
    "approve": "evidence:approve",
    "verify": "evidence:verify",
    "audit": "evidence:audit",
}


class MregGroup(click.Group):
    """The command group: commands load on demand, and every exception becomes one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        location = COMMANDS.get(cmd_name)
        if location is None:
            return None
        module, function = location.split(":")
        return getattr(importlib.import_module(f"mreg.cli.{module}"), function)

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except MregError as exc:
            _maybe_reraise()
            fail(message(exc), exit_code(exc))
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else "")
            sys.exit(ExitCode.OK)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "mreg"
            fail(f"{exc.format_message()} (see '{command} --help')", ExitCode.USAGE)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("aborted", ExitCode.FAILURE)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            sys.stderr.close()  # the reader went away (mreg ls | head): not an error
            sys.exit(ExitCode.OK)
        except OSError as exc:
            _maybe_reraise()
            where = f" ({exc.filename})" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}", ExitCode.FAILURE)
        except Exception as exc:  # noqa: BLE001 - last resort: never a traceback
            _maybe_reraise()
            fail(f"internal error: {type(exc).__name__}: {exc} (set MREG_DEBUG=1 for a traceback)", ExitCode.INTERNAL)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else ExitCode.OK)
        return result


def _maybe_reraise() -> None:
    if os.environ.get("MREG_DEBUG"):
        raise  # noqa: PLE0704 - re-raise the exception being handled


@click.group(name="mreg", cls=MregGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--registry",
    "registry_path",
    metavar="PATH",
    type=click.Path(file_okay=False, path_type=str),
    help="The registry to use (a directory holding .mreg, or .mreg itself). "
    "Default: $MREG_DIR, else the nearest .mreg above the current directory.",
)
@click.version_option(__version__, prog_name="mreg", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, registry_path: str | None) -> None:
    """mreg: a git-style, content-addressed model registry.

    Register model files with metadata as immutable, semantically versioned
    manifests; find them again by NAME@VERSION, NAME@latest, a tag or a digest.
    """
    ctx.obj = Session(registry_path)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="mreg")


def init_path(session: Session, directory: str | None) -> Path:
    """Where ``mreg init`` creates the store: DIR, else --registry, else $MREG_DIR, else here."""
    path = Path(directory or session.registry_path or os.environ.get("MREG_DIR") or ".")
    return path.parent if path.name == ".mreg" else path
