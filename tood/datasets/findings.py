"""The problems found while checking annotations, for one message.

The COCO, VOC and YOLO readers (``CocoDataset``, ``VOCDataset``, the
converters) check every file in one pass and report all that is wrong at
once: what makes the data unusable in one ``AnnotationError``, what they
fixed or dropped in one warning. :class:`Findings` collects the problems
of one such message, grouped by kind, with the ids they concern.
"""
from typing import Any, Dict, List, Tuple


class Findings:
    """Problems of one kind or another, each with the ids it concerns.

    ``add('has no bbox', 'annotation', i)`` for ``i`` 7 and 9 reads
    ``annotations 7, 9: has no bbox`` in :meth:`lines`; past ``max_ids``
    ids a kind is summarised (``... and 340 more``), so a file with
    thousands of bad boxes still gives a readable message.
    """

    def __init__(self, max_ids: int = 20) -> None:
        self.max_ids = max_ids
        self._groups: Dict[Tuple[str, str], List[Any]] = {}

    def add(self, what: str, noun: str, item_id: Any) -> None:
        self._groups.setdefault((what, noun), []).append(item_id)

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._groups.values())

    def lines(self) -> List[str]:
        lines = []
        for (what, noun), ids in self._groups.items():
            shown = ', '.join(str(i) for i in ids[:self.max_ids])
            if len(ids) > self.max_ids:
                shown += f' and {len(ids) - self.max_ids} more'
            plural = noun + ('s' if len(ids) > 1 else '')
            lines.append(f'{plural} {shown}: {what}')
        return lines

    def bullets(self) -> str:
        """:meth:`lines` as an indented list, one ``  - line`` each, the
        body of the readers' errors and warnings."""
        return '\n'.join(f'  - {line}' for line in self.lines())
