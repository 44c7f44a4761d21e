"""Which failures `cssl` reports as one `error:` line, and how that line reads.

An expected failure is the operator's to fix: bad input or params, a missing or corrupt file, a full disk,
a cycle in the pipeline. A traceback tells an operator nothing and buries the one line that matters, so
these end as `error: <what and where>; <what to do>` on stderr with exit code 2. Anything else is a bug
in this code and keeps its traceback (exit code 1), so that it can be reported. `cssl --debug ...` or
`CSSL_DEBUG=1` shows the traceback of expected failures too.

The CLI catches them in one place (`flows.cli.main`); the layers below only raise typed exceptions.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

DEBUG_ENV = "CSSL_DEBUG"
EXIT_EXPECTED = 2
OUT_OF_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


class CliError(Exception):
    """An expected failure the CLI finds itself (a missing report, a refused secret, ...)."""


# Expected failures of the layers below, by (module, class). A class is matched only once its module is
# loaded: an exception whose module was never imported cannot have been raised, and the CLI imports nothing.
TYPED_ERRORS = (
    ("cssl_core.config.errors", "ConfigError"),  # params.yaml refused as a whole (`cssl check`, every stage command)
    ("cssl_core.ingest.errors", "IngestInputError"),  # missing input, no DICOM, unsafe output folder
    ("cssl_core.quality.report", "QualityGateError"),  # a hard data-quality expectation failed
    ("cssl_core.privacy.gate", "PrivacyGateError"),  # a replay buffer leaks more than privacy.gate allows
    ("cssl_core.train.loop", "CheckpointMismatch"),  # a checkpoint from other params
    ("cssl_core.atomic_io", "OutOfSpaceError"),  # a write that did not fit on the disk
    ("dvc.exceptions", "DvcException"),  # DVC's own messages are written for users
    ("yaml", "YAMLError"),  # a corrupt params.yaml or other YAML file
)
# ValueError and KeyError are the project's convention for bad params and bad input (and cover corrupt
# JSON and Parquet files, whose readers raise ValueError subclasses).
BUILTIN_ERRORS = (
    CliError,
    ValueError,
    KeyError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FloatingPointError,  # a non-finite loss: lower the learning rate or check the inputs
)


def debug_requested() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _typed_classes() -> tuple[type[BaseException], ...]:
    classes = []
    for module_name, class_name in TYPED_ERRORS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            classes.append(cls)
    return tuple(classes)


def is_out_of_space(error: BaseException) -> bool:
    """ENOSPC or a quota; some C extensions (pyarrow) raise an OSError without errno that only says so."""
    if not isinstance(error, OSError):
        return False
    return error.errno in (errno.ENOSPC, errno.EDQUOT) or any(text in str(error) for text in OUT_OF_SPACE_TEXT)


def is_expected(error: BaseException) -> bool:
    return is_out_of_space(error) or isinstance(error, BUILTIN_ERRORS + _typed_classes())


def _yaml_message(error: BaseException) -> str | None:
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return None
    problem = " ".join(str(getattr(error, "problem", "") or "syntax error").split())
    return f"{mark.name}:{mark.line + 1}:{mark.column + 1}: not valid YAML ({problem}); fix the file and rerun"


def message(error: BaseException) -> str:
    """The text after `error: `; detail lines after the first are kept, indented."""
    text = None
    if is_out_of_space(error) and not isinstance(error, _typed_classes()):
        where = error.filename or f"an output of this command (run in {Path.cwd()})"
        text = f"no space left on device writing {where}: free space on that disk (df -h) and rerun"
    elif isinstance(error, OSError) and error.errno is not None and error.strerror and error.filename:
        text = f"{error.filename}: {error.strerror}"
    elif type(error).__module__.startswith("yaml"):
        text = _yaml_message(error)
    if text is None and isinstance(error, KeyError) and error.args:
        key = error.args[0]
        is_sentence = isinstance(key, str) and " " in key  # the project's KeyErrors explain themselves
        text = key if is_sentence else (
            f"missing key {key!r}: check params.yaml (and the input files, docs/data-contracts.md); "
            "`cssl --debug ...` shows where it was looked up"
        )
    if text is None:
        text = str(error)
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()] or [type(error).__name__]
    return "\n".join([lines[0], *(line if line.startswith(" ") else f"  {line}" for line in lines[1:])])


def internal_error_line(error: BaseException) -> str:
    """The last line under a bug's traceback: says it is a bug, so nobody hunts for a wrong input."""
    return (
        f"internal error: {type(error).__name__} (a bug in cssl, not in your data): "
        "please report it with the traceback above"
    )
