"""tools/misc/download_dataset.py against local archives (no network: the
download is monkeypatched to copy a file)."""
import hashlib
import io
import os
import os.path as osp
import runpy
import shutil
import tarfile
import zipfile

import pytest
from shared_data import shared_path
from tool_helpers import REPO

import tood.datasets  # noqa: F401  (registers everything)
from tood.datasets import VOCDataset, download
from tood.datasets.download import (Archive, DatasetSpec, DownloadError,
                                    install, tree_digest)

BCCD = shared_path('bccd')


@pytest.fixture
def served(monkeypatch):
    """Maps URL -> local file; fetch_url copies it (or fails for others)."""
    files = {}
    fetched = []

    def fake_fetch(url, dest, log=print, timeout=60.0):
        fetched.append(url)
        if url not in files:
            raise OSError('unreachable (no network in tests)')
        shutil.copyfile(files[url], dest)

    monkeypatch.setattr(download, 'fetch_url', fake_fetch)
    return files, fetched


def make_tar(path, members):
    with tarfile.open(path, 'w') as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


@pytest.fixture
def toy_dataset(tmp_path, monkeypatch, served):
    """A VOC-like dataset of two archives, registered as 'toy'."""
    files, _ = served
    md5s = []
    for name, members in (('trainval.tar', {
            'VOCdevkit/VOC2099/ImageSets/Main/trainval.txt': b'a\n',
            'VOCdevkit/VOC2099/Annotations/a.xml': b'<annotation/>'
    }), ('test.tar', {
            'VOCdevkit/VOC2099/ImageSets/Main/test.txt': b'b\n'
    })):
        path = str(tmp_path / 'server' / name)
        os.makedirs(osp.dirname(path), exist_ok=True)
        md5s.append(make_tar(path, members))
        files[f'http://mirror-b/{name}'] = path
    spec = DatasetSpec(
        description='toy',
        archives=(Archive('trainval.tar', ('http://mirror-a/trainval.tar',
                                           'http://mirror-b/trainval.tar'),
                          md5s[0]),
                  Archive('test.tar', ('http://mirror-b/test.tar', ),
                          md5s[1])),
        expected=('VOCdevkit/VOC2099/ImageSets/Main/trainval.txt',
                  'VOCdevkit/VOC2099/ImageSets/Main/test.txt'))
    monkeypatch.setitem(download.DOWNLOADS, 'toy', spec)
    return spec


def test_install_verifies_unpacks_and_cleans_up(tmp_path, toy_dataset,
                                                served):
    _, fetched = served
    root = str(tmp_path / 'data')
    os.makedirs(osp.join(root, 'VOCdevkit', 'VOC2007'))  # merged beside
    lines = []
    paths = install('toy', root, log=lines.append)
    assert all(osp.isfile(p) for p in paths)
    # The first mirror failed, the second served.
    assert fetched == ['http://mirror-a/trainval.tar',
                       'http://mirror-b/trainval.tar',
                       'http://mirror-b/test.tar']
    # The marker, written last, says the install finished.
    assert sorted(os.listdir(root)) == ['.toy.installed', 'VOCdevkit']
    assert sorted(os.listdir(osp.join(root, 'VOCdevkit'))) == [
        'VOC2007', 'VOC2099'
    ]
    # Installed: nothing is fetched again.
    install('toy', root, log=lines.append)
    assert len(fetched) == 3 and 'already in' in lines[-1]


def test_a_wrong_checksum_installs_nothing(tmp_path, toy_dataset, served,
                                           monkeypatch):
    bad = DatasetSpec(
        description='toy',
        archives=(Archive('test.tar', ('http://mirror-b/test.tar', ),
                          '0' * 32), ),
        expected=toy_dataset.expected)
    monkeypatch.setitem(download.DOWNLOADS, 'toy', bad)
    root = str(tmp_path / 'data')
    with pytest.raises(DownloadError, match=r'test.tar: MD5 \w+ is not the '
                       'published 0000'):
        install('toy', root, log=lambda line: None)
    assert os.listdir(root) == ['.downloads']
    assert os.listdir(osp.join(root, '.downloads')) == []


def test_unreachable_archive_names_the_urls(tmp_path, toy_dataset,
                                            monkeypatch):
    spec = DatasetSpec(description='x', archives=(Archive(
        'x.zip', ('http://nowhere/x.zip', )), ), expected=('x', ))
    monkeypatch.setitem(download.DOWNLOADS, 'x', spec)
    with pytest.raises(DownloadError, match='x.zip could not be downloaded:'
                       '\n  http://nowhere/x.zip: unreachable'):
        install('x', str(tmp_path), log=lambda line: None)
    with pytest.raises(DownloadError, match="unknown dataset 'nope'; choose "
                       'one of bccd, coco2017'):
        install('nope', str(tmp_path))


def test_archives_leading_outside_are_refused(tmp_path):
    path = str(tmp_path / 'evil.tar')
    make_tar(path, {'../outside.txt': b'x'})
    with pytest.raises(DownloadError, match='leads outside'):
        download.unpack(path, str(tmp_path / 'out'))
    assert not (tmp_path / 'outside.txt').exists()


@pytest.mark.shared_data('bccd')
def test_bccd_from_a_local_archive_through_the_tool(tmp_path, served):
    # GitHub's archive of the repository: one top folder
    # BCCD_Dataset-master/ holding BCCD/{Annotations,ImageSets,JPEGImages}.
    files, _ = served
    archive = str(tmp_path / 'BCCD_Dataset-master.zip')
    with zipfile.ZipFile(archive, 'w', zipfile.ZIP_STORED) as zf:
        for folder, _, names in os.walk(BCCD):
            for name in names:
                path = osp.join(folder, name)
                zf.write(path, osp.join('BCCD_Dataset-master',
                                        osp.relpath(path, BCCD)))
    spec = download.DOWNLOADS['bccd']
    files[spec.archives[0].urls[0]] = archive

    root = str(tmp_path / 'data')
    main = runpy.run_path(osp.join(REPO, 'tools', 'misc',
                                   'download_dataset.py'))['main']
    main(['bccd', '--root', root])
    # The layout configs/tood/*bccd* expect, files checked by digest.
    folders, digest = spec.tree_sha256
    assert tree_digest(root, folders) == digest
    assert not osp.exists(osp.join(root, '.downloads'))
    dataset = VOCDataset(
        data_root=osp.join(root, 'bccd'),
        ann_file='BCCD/ImageSets/Main/test.txt',
        metainfo=dict(classes=('RBC', 'WBC', 'Platelets')),
        test_mode=True)
    assert len(dataset) == 72

    # An altered file is caught by the digest.
    other = str(tmp_path / 'data2')
    with zipfile.ZipFile(archive, 'a') as zf:
        zf.writestr('BCCD_Dataset-master/BCCD/Annotations/extra.xml', '<a/>')
    with pytest.raises(SystemExit, match='differ from the known ones'):
        main(['bccd', '--root', other])
    assert not osp.exists(osp.join(other, 'bccd'))
