"""Fetch public detection datasets into ``data/`` in the layout the configs
expect (``tools/misc/download_dataset.py``).

Each dataset is a list of archives, each with its official URL (and
mirrors, tried in order) and its MD5 where one is published; after
unpacking, the expected files are checked, and for BCCD, whose GitHub
archive has no fixed checksum, a digest of the unpacked files.

Layouts (under ``--root``, default ``data``)::

    coco/annotations/instances_{train,val}2017.json  coco/{train,val}2017/
    VOCdevkit/VOC2007/{Annotations,ImageSets,JPEGImages}/   (trainval+test)
    VOCdevkit/VOC2012/{Annotations,ImageSets,JPEGImages}/   (trainval)
    bccd/BCCD/{Annotations,ImageSets,JPEGImages}/

An archive is downloaded to ``<root>/.downloads/<file>.part``, renamed once
complete and verified, unpacked into a temporary folder and moved into
place; nothing lands in the layout unless every archive verified and
unpacked. Archives are deleted afterwards unless ``keep_archives``; one
that is already downloaded and verifies is not fetched again.
"""
import hashlib
import os
import os.path as osp
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple


class DownloadError(RuntimeError):
    """A dataset could not be fetched, verified or unpacked; the message
    names the file or URL and what to do."""


@dataclass(frozen=True)
class Archive:
    """One file to fetch.

    Attributes:
        filename: its name on disk.
        urls: where to get it, tried in order.
        md5: the published checksum; None where none is published (see
            ``DatasetSpec.tree_sha256``).
    """
    filename: str
    urls: Tuple[str, ...]
    md5: Optional[str] = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its archives and the layout they unpack to.

    Attributes:
        description: one line for ``--list``.
        archives: fetched and unpacked in order into the same folder.
        expected: paths (relative to the root) that must exist afterwards;
            all present means the dataset is installed.
        rename: top-level folders of the archives to rename when moving
            them into the root (``BCCD_Dataset-master`` -> ``bccd``).
        tree_sha256: for archives without a fixed checksum: folders whose
            files are digested (see :func:`tree_digest`) and the digest.
        size: the download size, for the user.
    """
    description: str
    archives: Tuple[Archive, ...]
    expected: Tuple[str, ...]
    rename: Dict[str, str] = field(default_factory=dict)
    tree_sha256: Optional[Tuple[Tuple[str, ...], str]] = None
    size: str = ''


_VOC_HOSTS = ('http://host.robots.ox.ac.uk/pascal/VOC',
              'https://thor.robots.ox.ac.uk/pascal/VOC')


def _voc(path: str) -> Tuple[str, ...]:
    return tuple(f'{host}/{path}' for host in _VOC_HOSTS)


# The MD5s of COCO and VOC are the published ones (COCO: listed with the
# cocodataset.org archives and used by many toolboxes; VOC: torchvision's
# VOCDetection). They were copied, not recomputed here: this machine has no
# network. BCCD's GitHub archive is generated on request and has no fixed
# checksum; its unpacked files are checked instead, against a digest of the
# copy in this project's shared data folder (BCCD_Dataset, master).
DATASETS: Dict[str, DatasetSpec] = {
    'coco2017':
    DatasetSpec(
        description='COCO 2017 detection: train2017 (118k images), '
        'val2017 (5k), annotations',
        archives=(
            Archive('annotations_trainval2017.zip', (
                'http://images.cocodataset.org/annotations/'
                'annotations_trainval2017.zip', ),
                    'f4bbac642086de4f52a3fdda2de5fa2c'),
            Archive('val2017.zip',
                    ('http://images.cocodataset.org/zips/val2017.zip', ),
                    '442b8da7639aecaf257c1dceb8ba8c80'),
            Archive('train2017.zip',
                    ('http://images.cocodataset.org/zips/train2017.zip', ),
                    'cced6f7f71b7629ddf16f17bbcfab6b2'),
        ),
        expected=('coco/annotations/instances_train2017.json',
                  'coco/annotations/instances_val2017.json',
                  'coco/train2017', 'coco/val2017'),
        rename={
            'annotations': 'coco/annotations',
            'train2017': 'coco/train2017',
            'val2017': 'coco/val2017'
        },
        size='19 GB'),
    'voc2007':
    DatasetSpec(
        description='Pascal VOC 2007 trainval (5,011 images) and test '
        '(4,952)',
        archives=(
            Archive('VOCtrainval_06-Nov-2007.tar',
                    _voc('voc2007/VOCtrainval_06-Nov-2007.tar'),
                    'c52e279531787c972589f7e41ab4ae64'),
            Archive('VOCtest_06-Nov-2007.tar',
                    _voc('voc2007/VOCtest_06-Nov-2007.tar'),
                    'b6e924de25625d8de591ea690078ad9f'),
        ),
        expected=('VOCdevkit/VOC2007/ImageSets/Main/trainval.txt',
                  'VOCdevkit/VOC2007/ImageSets/Main/test.txt',
                  'VOCdevkit/VOC2007/Annotations',
                  'VOCdevkit/VOC2007/JPEGImages'),
        size='0.9 GB'),
    'voc2012':
    DatasetSpec(
        description='Pascal VOC 2012 trainval (11,540 detection images)',
        archives=(Archive('VOCtrainval_11-May-2012.tar',
                          _voc('voc2012/VOCtrainval_11-May-2012.tar'),
                          '6cd6e144f989b92b3379bac3b3de84fd'), ),
        expected=('VOCdevkit/VOC2012/ImageSets/Main/trainval.txt',
                  'VOCdevkit/VOC2012/Annotations',
                  'VOCdevkit/VOC2012/JPEGImages'),
        size='1.9 GB'),
    'bccd':
    DatasetSpec(
        description='BCCD blood-cell photos, Pascal VOC format, 364 images '
        '(MIT, github.com/Shenggan/BCCD_Dataset)',
        archives=(Archive('BCCD_Dataset-master.zip', (
            'https://github.com/Shenggan/BCCD_Dataset/archive/refs/heads/'
            'master.zip', )), ),
        expected=('bccd/BCCD/ImageSets/Main/trainval.txt',
                  'bccd/BCCD/ImageSets/Main/test.txt', 'bccd/BCCD/Annotations',
                  'bccd/BCCD/JPEGImages'),
        rename={'BCCD_Dataset-master': 'bccd'},
        tree_sha256=(('bccd/BCCD/Annotations', 'bccd/BCCD/ImageSets/Main',
                      'bccd/BCCD/JPEGImages'),
                     'cd33004aaaa0eb188727443d85c58a84126b0870a47ba5f8c24cb'
                     '0b9313117b8'),
        size='10 MB'),
}


def file_md5(path: str, chunk: int = 1 << 20) -> str:
    """The MD5 of a file, read in chunks (COCO's train2017 is 18 GB)."""
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(root: str, folders: Sequence[str]) -> str:
    """SHA-256 over ``'<path>\\t<sha256 of the file>\\n'`` for every file
    directly in ``folders`` (paths relative to ``root``), sorted: the
    content of a dataset whatever archive it came in."""
    lines = []
    for folder in folders:
        directory = osp.join(root, folder)
        for name in sorted(os.listdir(directory)):
            path = osp.join(directory, name)
            if osp.isfile(path):
                with open(path, 'rb') as f:
                    sha = hashlib.sha256(f.read()).hexdigest()
                lines.append(f'{folder}/{name}\t{sha}\n')
    return hashlib.sha256(''.join(sorted(lines)).encode()).hexdigest()


def fetch_url(url: str, dest: str, log: Callable[[str], None] = print,
              timeout: float = 60.0) -> None:
    """Write ``url`` to ``dest``, logging progress every 5%."""
    with urllib.request.urlopen(url, timeout=timeout) as response, \
            open(dest, 'wb') as out:
        total = int(response.headers.get('Content-Length') or 0)
        done, shown = 0, -5
        while True:
            block = response.read(1 << 20)
            if not block:
                break
            out.write(block)
            done += len(block)
            if total and done * 100 // total >= shown + 5:
                shown = done * 100 // total
                log(f'  {shown:3d}% of {total / 2**20:.0f} MiB')


def download_archive(archive: Archive,
                     folder: str,
                     log: Callable[[str], None] = print) -> str:
    """``folder/<filename>``, fetched unless it is there and verifies.

    Raises:
        DownloadError: every URL failed, or the file's MD5 is not the
            published one (the file is deleted then).
    """
    path = osp.join(folder, archive.filename)
    if osp.exists(path) and (archive.md5 is None
                             or file_md5(path) == archive.md5):
        log(f'{archive.filename}: already downloaded')
        return path
    os.makedirs(folder, exist_ok=True)
    failures = []
    for url in archive.urls:
        log(f'downloading {url}')
        part = path + '.part'
        try:
            fetch_url(url, part, log)
        except (urllib.error.URLError, OSError, ValueError) as error:
            failures.append(f'{url}: {getattr(error, "reason", error)}')
            if osp.exists(part):
                os.remove(part)
            continue
        os.replace(part, path)
        break
    else:
        raise DownloadError(
            f'{archive.filename} could not be downloaded:\n' +
            '\n'.join(f'  {f}' for f in failures) +
            '\nCheck the network (or a proxy: HTTPS_PROXY), or download it '
            f'by hand into {folder}/ and run the command again.')
    if archive.md5 is not None:
        got = file_md5(path)
        if got != archive.md5:
            os.remove(path)
            raise DownloadError(
                f'{archive.filename}: MD5 {got} is not the published '
                f'{archive.md5}; the file was deleted (an interrupted or '
                'altered download). Run the command again.')
    return path


def _safe_members(names: Sequence[str], archive: str) -> None:
    for name in names:
        norm = osp.normpath(name)
        if osp.isabs(norm) or norm == '..' or norm.startswith('..' + os.sep):
            raise DownloadError(
                f'{archive} holds the path {name!r}, which leads outside the '
                'folder it is unpacked into; refusing to unpack it')


def unpack(path: str, dest: str) -> None:
    """Unpack a .zip or .tar(.gz) into ``dest``, refusing members that
    would land outside it."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            _safe_members(zf.namelist(), path)
            zf.extractall(dest)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            _safe_members(tf.getnames(), path)
            tf.extractall(dest, filter='data')
    else:
        raise DownloadError(f'{path} is neither a zip nor a tar archive')


def merge_into(src: str, dst: str) -> None:
    """Move the tree ``src`` into ``dst``: entries ``dst`` lacks are moved,
    folders both have are merged; a file both have is an error."""
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        source, target = osp.join(src, name), osp.join(dst, name)
        if not osp.exists(target):
            os.replace(source, target)
        elif osp.isdir(source) and osp.isdir(target):
            merge_into(source, target)
        else:
            raise DownloadError(
                f'{target} already exists; remove it (or choose another '
                '--root) to install there')


def is_installed(spec: DatasetSpec, root: str) -> bool:
    return all(osp.exists(osp.join(root, p)) for p in spec.expected)


def install(name: str,
            root: str = 'data',
            keep_archives: bool = False,
            log: Callable[[str], None] = print) -> List[str]:
    """Download, verify and unpack dataset ``name`` under ``root``.

    Returns:
        The expected paths (see ``DatasetSpec.expected``), now present.
    Raises:
        DownloadError: an unknown name, a failed download or checksum, an
            archive that does not unpack to the expected layout, or a
            target that already exists in part.
    """
    if name not in DATASETS:
        raise DownloadError(f'unknown dataset {name!r}; choose one of '
                            f'{", ".join(sorted(DATASETS))}')
    spec = DATASETS[name]
    expected = [osp.join(root, p) for p in spec.expected]
    if is_installed(spec, root):
        log(f'{name} is already in {root}: {", ".join(expected)}')
        return expected
    downloads = osp.join(root, '.downloads')
    paths = [download_archive(a, downloads, log) for a in spec.archives]
    tmp = tempfile.mkdtemp(prefix=f'.{name}-', dir=root)
    try:
        for path in paths:
            log(f'unpacking {osp.basename(path)}')
            unpack(path, tmp)
        for old, new in spec.rename.items():
            if osp.exists(osp.join(tmp, old)):
                os.makedirs(osp.dirname(osp.join(tmp, new)) or tmp,
                            exist_ok=True)
                os.replace(osp.join(tmp, old), osp.join(tmp, new))
        lacking = [p for p in spec.expected
                   if not osp.exists(osp.join(tmp, p))]
        if lacking:
            raise DownloadError(
                f'the archives of {name} do not hold {", ".join(lacking)}; '
                'they may have changed upstream (docs/data.md lists what is '
                'expected)')
        if spec.tree_sha256 is not None:
            folders, digest = spec.tree_sha256
            got = tree_digest(tmp, folders)
            if got != digest:
                raise DownloadError(
                    f'the files of {name} differ from the known ones (digest '
                    f'{got}, expected {digest}): the upstream repository '
                    'changed or the download is damaged; nothing was '
                    'installed')
        merge_into(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not keep_archives:
        for path in paths:
            os.remove(path)
        if osp.isdir(downloads) and not os.listdir(downloads):
            os.rmdir(downloads)
    log(f'{name} installed: {", ".join(expected)}')
    return expected
