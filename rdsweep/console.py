"""What rdsweep's commands print: the console's log format and filter (conf/config.yaml's
hydra.job_logging), an exception as one line, and bad input's one line and exit code."""

from __future__ import annotations

import logging
import sys

from rdsweep.option import ConfigError, DataError

BAD_INPUT = (ConfigError, DataError)  # the errors that end a command with one line (`fail`)


class ConsoleFormatter(logging.Formatter):
    """The console's log format (hydra.job_logging): one line per record, without tracebacks;
    main.log, formatted by its own handler, keeps them. Records of libraries (orbax's errors
    about a full disk, ...) reach the console only as rdsweep's own one-line warning."""

    def formatException(self, ei) -> str:
        return ""

    def formatStack(self, stack_info: str) -> str:
        return ""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).strip().split("\n")[0]


class OwnRecords(logging.Filter):
    """The console's filter: rdsweep's records, and any record at CRITICAL."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.name.split(".")[0] in ("rdsweep", "hydra_plugins", "__main__")
                or record.levelno >= logging.CRITICAL)


def error_line(e: BaseException) -> str:
    """An exception as one line: its type and its message's first line."""
    return f"{type(e).__name__}: {e}".splitlines()[0]


def fail(message: str, code: int = 2, prog: str = "rdsweep") -> None:
    """One line on stderr, exit code 2 (bad input) or `code`; prog names the command."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)
