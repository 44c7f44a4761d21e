"""Keep third-party chatter out of logs and stderr during ingestion.

pydicom's warnings and log records quote offending header values (names, IDs, UIDs) verbatim, and ITK
prints warnings to stderr; both would leak identifiers past the privacy boundary. Our own log lines use
counts only.
"""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import SimpleITK as sitk

NOISY_LOGGERS = ("pydicom",)


@contextmanager
def quiet_readers() -> Iterator[None]:
    """Silence pydicom logging, Python warnings and ITK warnings for the block, then restore them."""
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    previous = [lg.disabled for lg in loggers]
    itk_warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    for lg in loggers:
        lg.disabled = True
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, was in zip(loggers, previous, strict=True):
            lg.disabled = was
        sitk.ProcessObject.SetGlobalWarningDisplay(itk_warnings)


def silence_worker() -> None:
    """Process-pool initializer: a worker process only ever ingests, so silence it for its lifetime.

    Ctrl-C reaches every process of the terminal's foreground group: a worker that took it printed its own
    KeyboardInterrupt traceback. Workers ignore SIGINT; the parent takes it, cancels what is queued and ends the
    command with one line (flows.cli.main).
    """
    if threading.current_thread() is threading.main_thread():  # a pool process; not a Dask worker's thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).disabled = True
    warnings.simplefilter("ignore")
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
