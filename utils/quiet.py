"""Silencing library log messages that this project's design makes expected, and only those calls."""
from __future__ import annotations

import logging
from contextlib import contextmanager


@contextmanager
def quiet_logs(*names: str, level: int = logging.ERROR):
    """Raise the named loggers to `level` for the duration, e.g. TensorFlow's retracing warning where a few
    input shapes are fed by design, or absl's "HDF5 is legacy" where `.h5` is written on purpose."""
    loggers = [logging.getLogger(name) for name in names]
    before = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(level)
    try:
        yield
    finally:
        for log, lvl in zip(loggers, before):
            log.setLevel(lvl)
