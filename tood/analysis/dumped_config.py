"""A config that ``tools/train.py`` dumped into a work dir, read without
running it.

mmengine writes the merged config as Python text (``Config.pretty_text``):
one assignment per top-level key, of constants, lists, tuples, dict
displays and ``dict(key=value, ...)`` calls. ``Config.fromfile`` would
execute the file, and with it anything else a shared work dir's ``.py``
holds; here the text is parsed with ``ast`` and only those forms are
evaluated. Anything else (an import, another call, a name, a
comprehension) is refused with its line.
"""
import ast
from typing import Any, Dict

from mmengine.config import Config

from tood.errors import ConfigError


class _Refused(Exception):
    """A node that is not a plain value; ``args``: (node, what it is)."""


def _value(node: ast.AST) -> Any:
    """The value of an expression made of plain values only."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List):
        return [_value(item) for item in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(item) for item in node.elts)
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _Refused(node, '{**...}')
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(
            node.op, (ast.USub, ast.UAdd)) and isinstance(
                node.operand, ast.Constant) and isinstance(
                    node.operand.value, (int, float)):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name != 'dict':
            raise _Refused(node, f'a call of {name or ast.unparse(node.func)}')
        if node.args or any(k.arg is None for k in node.keywords):
            raise _Refused(node, 'dict(**...) or dict with positional '
                           'arguments')
        return {k.arg: _value(k.value) for k in node.keywords}
    if isinstance(node, ast.Name):
        raise _Refused(node, f'the name {node.id!r}')
    raise _Refused(node, f'a {type(node).__name__}')


def _statement_kind(statement: ast.stmt) -> str:
    """What a statement other than an assignment is, for the message."""
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return 'an import'
    if isinstance(statement, ast.Expr) and isinstance(statement.value,
                                                      ast.Call):
        return f'a call of {ast.unparse(statement.value.func)}'
    return f'a statement ({type(statement).__name__})'


def parse_config_text(text: str, source: str) -> Dict[str, Any]:
    """The top-level keys of a dumped config's text, evaluated as plain
    values.

    Args:
        text: the config's Python text.
        source: its file, for messages.
    Raises:
        ConfigError: naming ``source`` and the line of the first statement
            or value that is not a plain assignment of plain values.
    """
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as error:
        raise ConfigError(f'{source} is not valid Python (line '
                          f'{error.lineno}): {error.msg}') from None
    values = {}
    try:
        for statement in tree.body:
            if not isinstance(statement, ast.Assign):
                raise _Refused(statement, _statement_kind(statement))
            if len(statement.targets) != 1 or not isinstance(
                    statement.targets[0], ast.Name):
                raise _Refused(statement, 'an assignment to several names')
            values[statement.targets[0].id] = _value(statement.value)
    except _Refused as refused:
        node, what = refused.args
        raise ConfigError(
            f'{source}, line {node.lineno}: {what} where a config dumped '
            'by tools/train.py has only plain values (constants, lists, '
            'tuples, dicts); refusing to read it, and nothing in it was '
            'run. Pass the config the run used instead.') from None
    return values


def read_dumped_config(path: str) -> Config:
    """The config in ``path`` (see the module docstring), without running
    it.

    Raises:
        ConfigError: as :func:`parse_config_text`.
        OSError: the file cannot be read.
    """
    with open(path, encoding='utf-8') as f:
        text = f.read()
    return Config(parse_config_text(text, path), filename=path)
