"""The errors a user can fix, at the bottom of the package so that every
layer can raise them.

Each message names what is wrong (a config key, a file, an annotation id,
an iteration) and what to do about it; the tools print it instead of a
traceback (``tood.engine.errors.explain_error``).
"""
import pickle


class ConfigError(ValueError):
    """A config that cannot work; the message names the key and why."""


class AnnotationError(ValueError):
    """An annotation file that cannot be used as it is.

    The message names the file and every problem found in it, each with
    the ids of the images or annotations concerned.
    """


class ImageLoadError(OSError):
    """An image file that cannot be used; the message starts with its
    path and says what is wrong."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint (or another pickle read with the checkpoint allow-list)
    holds objects outside the allow-list, or comes from a source that is
    not read; nothing was run."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss (or weights); the message
    names the iteration, the loss terms and the last checkpoint."""


class ModelDownloadError(OSError):
    """Weights named by a URL could not be fetched (no network, say); the
    message names the file, where it was looked for and the ways on."""


class OutputConflictError(FileExistsError):
    """An output a tool was about to write is one of its inputs (or
    another of its outputs); the message names both and the option that
    chose the output. Nothing was written."""


USER_ERRORS = (ConfigError, AnnotationError, ImageLoadError,
               UnsafeCheckpointError, NonFiniteLossError, ModelDownloadError,
               OutputConflictError)


def check_value(ok: bool, key: str, allowed: str, value) -> None:
    """Raise a ConfigError saying that config ``key`` must be ``allowed``
    unless ``ok``: bad values stop at build time, named, instead of deep
    inside a training step."""
    if not ok:
        raise ConfigError(f'{key} must be {allowed}, got {value!r}')


def build_at(registry, cfg: dict, key: str):
    """Build ``cfg`` from ``registry``; a ValueError or TypeError of the
    build (a bad argument) becomes a ConfigError naming config ``key``."""
    try:
        return registry.build(cfg)
    except (ValueError, TypeError) as error:
        raise ConfigError(f'{key}: {error}') from error
