"""Project CLI: Kedro's own `kedro run`, with errors a user can act on shown as one message.

A wrong parameter, a missing dataset root, a backbone that cannot load offline or a CUDA-only
option on a CPU machine raise ValueError / FileNotFoundError / KeyError / ImportError naming
the parameter or path and what to do (and a run that stops on another run's lock of a stage,
DataLockTimeout, names the lock and its holder); those are printed alone, without the traceback (set
DRIFTING_KEDRO_TRACEBACK=1 to see it). An input no pipeline has made yet is reported by the note
`hooks.RunSummaryHooks` adds, naming the pipeline that makes it. Anything else propagates.
"""

import functools
import os

import click
from kedro.framework.cli.project import run as kedro_run

from drifting_kedro.hooks import MISSING_INPUT_NOTE
from drifting_kedro.locking import DataLockTimeout

# DataLockTimeout: another run holds a stage of this data folder (the message names it).
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, ImportError, DataLockTimeout)


def user_error(error: BaseException | None) -> BaseException | None:
    """The first error in the cause chain that changing the input or configuration fixes."""
    while error is not None:
        if isinstance(error, USER_ERRORS):
            return error
        error = error.__cause__ or error.__context__
    return None


def missing_input(error: BaseException | None) -> str | None:
    """The hooks' note naming a missing input and its pipeline, anywhere in the chain."""
    while error is not None:
        for note in getattr(error, "__notes__", []):
            if note.startswith(MISSING_INPUT_NOTE):
                return note
        error = error.__cause__ or error.__context__
    return None


def _message(text: str) -> str:
    return f"{text}\n(full traceback: DRIFTING_KEDRO_TRACEBACK=1 kedro run ...)"


def _text(error: BaseException) -> str:
    return error.args[0] if isinstance(error, KeyError) and error.args else str(error)


def _with_user_errors(command: click.Command) -> click.Command:
    @functools.wraps(command.callback)
    def callback(*args, **kwargs):
        try:
            return command.callback(*args, **kwargs)
        except Exception as error:
            found = user_error(error)
            note = missing_input(error)
            if (found is None and note is None) or os.environ.get("DRIFTING_KEDRO_TRACEBACK"):
                raise
            raise click.ClickException(_message(note or _text(found))) from None

    return click.Command(
        name=command.name,
        params=command.params,
        callback=callback,
        help=command.help,
        context_settings=command.context_settings,
    )


@click.group(name="drifting-kedro")
def cli() -> None:
    """drifting-kedro project commands."""


run = _with_user_errors(kedro_run)
cli.add_command(run, "run")
