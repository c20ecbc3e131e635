"""Files people share (predictions, work dirs, checkpoints, ONNX models)
are read without running anything in them, and a bad one ends a tool with
one message naming it (docs/robustness.md)."""
import io
import json
import os.path as osp
import pickle
import runpy

import pytest
import torch
from tool_helpers import R50_1X, REPO, data_options


def tool_main(*parts: str):
    return runpy.run_path(osp.join(REPO, 'tools', *parts))['main']


class RunsCode:
    """Unpickling it creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


class NestedStorage:
    """Pickles as a storage whose nested torch.save payload runs code:
    plain pickle hands such bytes to torch.load(weights_only=False)."""

    def __init__(self, marker):
        buffer = io.BytesIO()
        torch.save({'x': RunsCode(marker)}, buffer)
        self.payload = buffer.getvalue()

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.payload, ))


# ------------------------------- predictions: confusion matrix, thresholds


@pytest.fixture(params=[RunsCode, NestedStorage], ids=lambda c: c.__name__)
def crafted_predictions(tmp_path, request):
    """A preds.pkl whose unpickling creates the returned marker file."""
    marker = tmp_path / 'pwned'
    preds = tmp_path / 'preds.pkl'
    with open(preds, 'wb') as f:
        pickle.dump(
            [dict(img_id=100, pred_instances=request.param(marker))], f)
    return preds, marker


def test_confusion_matrix_refuses_a_pickle_that_runs_code(
        two_class_coco, tmp_path, crafted_predictions):
    preds, marker = crafted_predictions
    main = tool_main('analysis', 'confusion_matrix.py')
    with pytest.raises(SystemExit) as info:
        main([R50_1X, str(preds), '--out', str(tmp_path / 'cm.png'),
              '--cfg-options', *data_options(two_class_coco)])
    assert f"Refusing to load pickle '{preds}'" in str(info.value.code)
    assert not marker.exists()


def test_operating_point_refuses_a_pickle_that_runs_code(
        two_class_coco, tmp_path, crafted_predictions):
    preds, marker = crafted_predictions
    # With --predictions the checkpoint is named but not read.
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    main = tool_main('analysis', 'operating_point.py')
    with pytest.raises(SystemExit) as info:
        main([R50_1X, str(checkpoint), '--predictions', str(preds),
              '--out-dir', str(tmp_path / 'op'),
              '--cfg-options', *data_options(two_class_coco)])
    assert f"Refusing to load pickle '{preds}'" in str(info.value.code)
    assert not marker.exists()


def coco_results(root: str, split: str) -> list:
    """Perfect detections of make_coco's annotations, in COCO's result
    format (what tools/test.py --out results.json writes)."""
    with open(osp.join(root, 'annotations', f'{split}.json')) as f:
        coco = json.load(f)
    return [
        dict(image_id=a['image_id'], bbox=a['bbox'], score=0.9,
             category_id=a['category_id']) for a in coco['annotations']
    ]


def test_confusion_matrix_reads_the_results_json(two_class_coco, tmp_path,
                                                 capsys):
    results = coco_results(two_class_coco, 'val')
    # The first object is also taken for the other class, with a lower
    # score: a false positive of that class.
    wrong = dict(results[0], category_id=3 - results[0]['category_id'],
                 score=0.5)
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(results + [wrong]))
    main = tool_main('analysis', 'confusion_matrix.py')
    main([R50_1X, str(path), '--out', str(tmp_path / 'cm.png'),
          '--cfg-options', *data_options(two_class_coco)])
    out = capsys.readouterr().out
    assert 'confusion matrix of 2 images' in out
    counts = out.split('background):\n', 1)[1].split('\nconfusion')[0]
    diagonal = [sum(r['category_id'] == c for r in results) for c in (1, 2)]
    row = [0, 0, 0]
    row[wrong['category_id'] - 1] = 1
    expected = [[diagonal[0], 0, 0], [0, diagonal[1], 0], row]
    assert counts.split() == str(torch.tensor(expected).numpy()).split()


@pytest.mark.parametrize('content, message', [
    ('{"a": 1}', 'not a list of COCO results'),
    ('[{"image_id": 100, "bbox": [0, 0, 1], "score": 1, '
     '"category_id": 1}]', 'entry 0: bbox must be four numbers'),
    ('[{"image_id": 100, "bbox": [0, 0, 1, 1], "score": 1, '
     '"category_id": 7}]', 'entry 0: category_id 7 is not among'),
    ('[{"image_id": 5, "bbox": [0, 0, 1, 1], "score": 1, '
     '"category_id": 1}]', 'image 5 of the predictions is not in'),
    ('[{"image_id": 1', 'is not valid JSON'),
])
def test_confusion_matrix_names_a_bad_results_json(two_class_coco, tmp_path,
                                                   content, message):
    path = tmp_path / 'results.json'
    path.write_text(content)
    main = tool_main('analysis', 'confusion_matrix.py')
    with pytest.raises(SystemExit) as info:
        main([R50_1X, str(path), '--cfg-options',
              *data_options(two_class_coco)])
    assert message in str(info.value.code)
    assert str(path) in str(info.value.code)


# ----------------------------------------------------------- infer.py

SHAPES = osp.join(REPO, 'configs', 'tood', 'tood_r18_fpn_11e_shapes.py')


def test_infer_ends_with_one_message_for_a_bad_checkpoint(tmp_path):
    import cv2
    import numpy as np
    image = str(tmp_path / 'a.png')
    cv2.imwrite(image, np.zeros((16, 16, 3), np.uint8))
    marker = tmp_path / 'pwned'
    crafted = tmp_path / 'crafted.pth'
    torch.save({'state_dict': {}, 'meta': RunsCode(marker)}, crafted)
    main = tool_main('infer.py')
    out_dir = str(tmp_path / 'out')
    with pytest.raises(SystemExit) as info:
        main([image, SHAPES, str(crafted), '--out-dir', out_dir])
    message = str(info.value.code)
    assert message.startswith(f"Refusing to load checkpoint '{crafted}'")
    # One paragraph, without torch's advice to turn the check off.
    assert 'io.open' in message and 'weights_only' not in message
    assert '\n' not in message
    assert not marker.exists()
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(SystemExit, match=f'{missing} does not exist'):
        main([image, SHAPES, missing, '--out-dir', out_dir])
    assert not osp.exists(out_dir)


def test_infer_refuses_an_out_dir_that_would_overwrite_an_image(tmp_path):
    import cv2
    import numpy as np
    from mmengine.config import Config
    from mmengine.runner import save_checkpoint

    from tood.registry import MODELS
    from tood.utils import register_all_modules
    register_all_modules()
    model = MODELS.build(Config.fromfile(SHAPES).model)
    checkpoint = str(tmp_path / 'model.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), checkpoint)
    images = tmp_path / 'images'
    images.mkdir()
    cv2.imwrite(str(images / 'a.png'), np.zeros((16, 16, 3), np.uint8))
    before = (images / 'a.png').read_bytes()
    with pytest.raises(SystemExit) as info:
        tool_main('infer.py')([str(images), SHAPES, checkpoint, '--out-dir',
                               str(images)])
    assert str(info.value.code) == (
        f'{images}/a.png would be written over the input {images}/a.png: '
        'choose another output folder (--out-dir); nothing was written')
    assert (images / 'a.png').read_bytes() == before
    assert sorted(p.name for p in images.iterdir()) == ['a.png']
