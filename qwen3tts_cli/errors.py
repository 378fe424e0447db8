"""The small family of exceptions the engine raises; the CLI maps them to exit codes."""

from contextlib import contextmanager


class Qwen3TTSError(Exception):
    """Base class. ``exit_code`` is what the command-line tool exits with."""

    exit_code = 1


class InputError(Qwen3TTSError):
    """The user asked for something invalid (bad text, unknown speaker, wrong option)."""

    exit_code = 2


class RequestError(InputError):
    """A request the engine refuses: ``field`` names the request field at fault, ``code`` the rule,
    ``context`` the values a front door may need to word it in its own terms (e.g. the model type)."""

    def __init__(self, message: str, field: str, code: str, **context):
        super().__init__(message)
        self.field, self.code, self.context = field, code, context


class ModelError(Qwen3TTSError):
    """A model folder or checkpoint is missing, malformed or does not match its config."""

    exit_code = 1


class DownloadError(Qwen3TTSError):
    """Fetching a model from the hub failed (network, integrity)."""

    exit_code = 1


class DownloadInProgress(DownloadError):
    """Another process is downloading the same model into the same place right now."""


class TruncatedError(Qwen3TTSError):
    """The runaway guard cut an utterance short; its audio so far was still delivered."""

    exit_code = 3


@contextmanager
def reading(path, error: type[Qwen3TTSError], expected: str | None = None):
    """The system's errors while reading ``path`` as one ``error`` that names the file; with
    ``expected``, a folder in its place is said to be one ("is a directory, expected ...")."""
    try:
        yield
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError as e:
        if expected is None:
            raise error(f"{path}: cannot read ({e.strerror})") from None
        raise error(f"{path}: is a directory, expected {expected}") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None


class BusyError(Qwen3TTSError):
    """The scheduler's queue is full: try again later (a server answers 429)."""

    exit_code = 1
