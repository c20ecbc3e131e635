"""The one-paragraph messages the tools print for errors a user can fix,
instead of a traceback.

``tools/train.py`` and ``tools/test.py`` run the runner inside
:func:`exit_if_user_error`'s net (``tood.engine.run_tool``). The errors it
recognises are the project's own (``tood.errors.USER_ERRORS``: a bad config
value, annotation file or image, an unsafe checkpoint, weights that cannot
be downloaded, a loss that is no longer finite): each already names the
key, file or iteration, so nothing here reads the text of someone else's
exception. Config mistakes that mmengine would only find while building
(an unknown type, a misspelt key) are caught before the runner exists, by
``tood.engine.config_check.check_config``. Anything else keeps its
traceback, as a bug should.
"""
import sys
from typing import Any, Optional

from tood.errors import USER_ERRORS


def _own_message(error: BaseException) -> str:
    """The error's message without the traceback that a DataLoader worker
    puts in front of it (a worker re-raises the error's type with the
    formatted traceback as its message)."""
    message = str(error)
    if 'Original Traceback' in message:
        marker = f'{type(error).__name__}: '
        message = message.rpartition(marker)[2].strip() or message
    return message


def explain_error(error: BaseException) -> Optional[str]:
    """The message for an error the user can fix, or None for others."""
    if isinstance(error, USER_ERRORS):
        return _own_message(error)
    return None


def exit_if_user_error(error: BaseException, runner: Any = None) -> None:
    """Exit the tool with the message of :func:`explain_error` when there
    is one (also written to the runner's log file when there is a runner);
    return otherwise, so that the caller re-raises.

    Usage: ``except Exception as e: exit_if_user_error(e, runner); raise``.
    """
    message = explain_error(error)
    if message is None:
        return
    if runner is not None:
        runner.logger.error(message)
        sys.exit(1)
    sys.exit(message)
