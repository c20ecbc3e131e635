"""The collector of annotation problems that the COCO, VOC and YOLO
readers share."""
from tood.datasets.findings import Findings


def test_problems_are_grouped_by_kind_in_order_of_first_sight():
    findings = Findings()
    findings.add('has no bbox', 'annotation', 7)
    findings.add('unknown category', 'annotation', 8)
    findings.add('has no bbox', 'annotation', 9)
    assert len(findings) == 3
    assert findings.lines() == [
        'annotations 7, 9: has no bbox', 'annotation 8: unknown category'
    ]
    assert findings.bullets() == ('  - annotations 7, 9: has no bbox\n'
                                  '  - annotation 8: unknown category')


def test_many_ids_of_one_kind_are_summarised():
    findings = Findings(max_ids=3)
    for i in range(10):
        findings.add('dropped', 'line', f'a.txt:{i}')
    assert findings.lines() == [
        'lines a.txt:0, a.txt:1, a.txt:2 and 7 more: dropped'
    ]
    assert len(findings) == 10
    assert not Findings() and Findings().bullets() == ''
