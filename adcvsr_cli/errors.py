"""Typed errors that users of the library can catch.

Every error the tool raises on purpose derives from :class:`AdcvsrError` and carries the
process exit code the command line maps it to. The CLI prints ``str(error)``; messages name
the file and the problem.
"""

from __future__ import annotations

# Exit codes, documented in ``adcvsr --help`` and the README.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


class AdcvsrError(Exception):
    """Base class of every error the tool raises on purpose."""

    exit_code: int = EXIT_ERROR


class UsageError(AdcvsrError):
    """The command line or API arguments make no sense together."""

    exit_code = EXIT_USAGE


class CheckpointError(AdcvsrError):
    """A checkpoint file is malformed: wrong format version, missing, unexpected or mis-shaped tensors."""


class ConversionError(CheckpointError):
    """A released (pickled) checkpoint could not be converted safely."""


class WeightsError(AdcvsrError):
    """Weights could not be resolved, downloaded, verified or found in the cache."""


class VideoError(AdcvsrError):
    """An input or output media file is unusable (missing, corrupt, unsupported, unwritable)."""


class OutOfMemory(AdcvsrError):
    """The device ran out of memory even at the smallest tile and batch."""


class Interrupted(AdcvsrError):
    """A library call stopped because its ``cancel`` event was set (the command line sets it on
    SIGINT or SIGTERM). It is the one exception a cancelled call raises, wherever it stops:
    decoding, the network or encoding; the unfinished output is removed first."""

    exit_code = EXIT_INTERRUPTED
