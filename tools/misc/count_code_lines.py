"""Count code lines: lines that hold code, not blank, not comments, not
docstrings.

    python tools/misc/count_code_lines.py tood/models/heads/tood_head.py
    python tools/misc/count_code_lines.py tood/models --total

A docstring is a string expression standing alone as the first statement
of a module, class or function (what ``ast.get_docstring`` reads); its
lines do not count, nor do lines that hold only comments or whitespace.
A line that holds any other token counts once.
"""
import argparse
import ast
import io
import os
import tokenize
from typing import Iterable, List, Set

SKIPPED_TOKENS = {
    tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
    tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER
}


def docstring_lines(tree: ast.AST) -> Set[int]:
    """Line numbers covered by the docstrings of ``tree``."""
    lines: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def count_code_lines(source: str) -> int:
    """The number of code lines of one Python source text."""
    skip = docstring_lines(ast.parse(source))
    code: Set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in SKIPPED_TOKENS:
            continue
        for line in range(token.start[0], token.end[0] + 1):
            if line not in skip:
                code.add(line)
    return len(code)


def python_files(paths: Iterable[str]) -> List[str]:
    files = []
    for path in paths:
        if os.path.isdir(path):
            for folder, _, names in sorted(os.walk(path)):
                files += [os.path.join(folder, n) for n in sorted(names)
                          if n.endswith('.py')]
        else:
            files.append(path)
    return files


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('paths', nargs='+', help='files or folders')
    parser.add_argument('--total', action='store_true',
                        help='print only the sum')
    args = parser.parse_args(argv)
    total = 0
    for path in python_files(args.paths):
        with open(path, encoding='utf-8') as f:
            count = count_code_lines(f.read())
        total += count
        if not args.total:
            print(f'{count:6d}  {path}')
    print(f'{total:6d}  total')


if __name__ == '__main__':
    main()
