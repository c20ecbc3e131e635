"""Where outputs derived from input files go, so that none overwrites an
input or another output.

``tools/infer.py`` and ``tools/analysis/browse_dataset.py`` write one
drawing (and a json) per image, named after the image: :func:`output_names`
gives distinct names, and :func:`refuse_overwriting_inputs` stops a tool
before it writes anything when an output would replace one of its inputs
(``--out-dir`` set to the image folder, a converter's ``--out`` set to its
split file).
"""
import os.path as osp
from collections import Counter
from typing import Iterable, List, Sequence

from tood.errors import OutputConflictError


def output_names(paths: Sequence[str]) -> List[str]:
    """A distinct output name (no extension added) per input file.

    The file's stem where no other input shares it (``dog.png`` ->
    ``dog``); else its name with the extension (``cat.jpg``, ``cat.png``);
    where names collide too (the same name in several folders), its path
    below the folder common to all inputs, ``/`` written ``__``
    (``sub__cat.png``); a name that still equals another's gets ``~2``,
    ``~3``, ... in input order.
    """
    stems = [osp.splitext(osp.basename(p))[0] for p in paths]
    names = [osp.basename(p) for p in paths]
    stem_count, name_count = Counter(stems), Counter(names)
    out = []
    for path, stem, name in zip(paths, stems, names):
        if stem_count[stem] == 1:
            out.append(stem)
        elif name_count[name] == 1:
            out.append(name)
        else:
            # Two inputs at least share this name, so the common folder
            # is above both.
            root = osp.commonpath([osp.abspath(p) for p in paths])
            out.append(
                osp.relpath(osp.abspath(path), root).replace(osp.sep, '__'))
    return _numbered_where_equal(out)


def _numbered_where_equal(names: List[str]) -> List[str]:
    # A folder path written with '__' can equal another input's name
    # (a/x.png and a__x.png both give a__x.png): the second and later of
    # equal names get '~2', '~3', ..., skipping any name already given.
    counts = Counter(names)
    taken = {name for name in names if counts[name] == 1}
    out = []
    for name in names:
        candidate, number = name, 1
        while counts[name] > 1 and candidate in taken:
            number += 1
            candidate = f'{name}~{number}'
        taken.add(candidate)
        out.append(candidate)
    return out


def _same_file(a: str, b: str) -> bool:
    if osp.realpath(a) == osp.realpath(b):
        return True
    # Hard links, or one path through another mount.
    return osp.exists(a) and osp.exists(b) and osp.samefile(a, b)


def refuse_overwriting_inputs(outputs: Iterable[str], inputs: Iterable[str],
                              option: str) -> None:
    """Raise unless every output is a file other than every input.

    Args:
        outputs: the files a tool is about to write.
        inputs: the files it reads.
        option: the argument that chose the outputs (``--out-dir``), for
            the message.
    Raises:
        OutputConflictError: naming the first output that is an input.
    """
    inputs = list(inputs)
    real_inputs = {osp.realpath(p): p for p in inputs}
    for output in outputs:
        source = real_inputs.get(osp.realpath(output))
        if source is None and osp.exists(output):
            source = next((p for p in inputs if _same_file(output, p)),
                          None)
        if source is not None:
            raise OutputConflictError(
                f'{output} would be written over the input {source}: '
                f'choose another {option}; nothing was written')
