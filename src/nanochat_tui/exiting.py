"""Leaving a process that loaded JAX without the interpreter's teardown.

A finished run has flushed its events and closed its checkpoints and sinks. What is left at
interpreter teardown is XLA's and tensorstore's native thread pools, which can abort an otherwise
successful process ("terminate called ... FATAL: exception not rethrown", exit status -6) and turn a
green CI step red. :func:`leave` runs what a normal exit would (the atexit handlers: a server's stop,
W&B's finish; the log handlers' flush) and then ends the process with ``os._exit``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys


def leave(code: int) -> None:
    """End the process with ``code``: ``sys.exit`` without JAX loaded, else the quick exit above."""
    if "jaxlib" not in sys.modules:
        sys.exit(code)
    try:
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader of stdout went away: the exit status stays
        pass
    except Exception:  # a failing exit handler must not become a teardown traceback
        pass
    os._exit(code)
