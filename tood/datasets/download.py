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

An archive is downloaded to ``<root>/.downloads/<file>.part`` and renamed
once every byte the server announced has arrived and its MD5 (if
published) matches; it is unpacked into a hidden temporary folder
``<root>/.<name>-<pid>-*`` and moved into place only if every archive
unpacked and the files check out; a merge into folders that exist lists
every file it would replace before moving anything (a file already there
with the same content is no conflict). ``<root>/.<name>.installed``,
written last, is what makes a dataset installed. An archive that fails
its checks or does not unpack is deleted, so that the next run fetches it
anew; a full disk is named with the space needed. Temporary folders left
by an install that was killed are removed by the next one. Archives are
deleted afterwards unless ``keep_archives``; one that is already
downloaded and verifies is not fetched again.
"""
import errno
import filecmp
import hashlib
import http.client
import os
import os.path as osp
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple


class DownloadError(RuntimeError):
    """A dataset could not be fetched, verified or unpacked; the message
    names the file or URL and what to do."""


class DiskFullError(DownloadError):
    """No space left for a download or for unpacking; the message names
    the disk and the space needed."""


class ArchiveError(DownloadError):
    """An archive that cannot be unpacked as it is: not an archive,
    damaged, or with members or links leading outside its folder."""


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
DOWNLOADS: Dict[str, DatasetSpec] = {
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


# The errors a full disk (or a full quota) raises.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _no_space(where: str, doing: str, needed: int, free: int) -> str:
    size = f'{needed:,} bytes' if needed else 'a size the server did not say'
    return (f'no space left on the disk of {where} while {doing}: it needs '
            f'{size}, {free:,} bytes free. Free some space (or choose '
            'another --root) and run the command again.')


def _free_bytes(folder: str) -> int:
    return shutil.disk_usage(folder).free


def fetch_url(url: str, dest: str, log: Callable[[str], None] = print,
              timeout: float = 60.0) -> None:
    """Write ``url`` to ``dest``, logging progress every 5%.

    Raises:
        ConnectionError: the connection closed before the
            ``Content-Length`` the server announced had arrived.
        DownloadError: the disk of ``dest`` is full, or has less space
            than the announced size (checked first).
        OSError, urllib.error.URLError, http.client.HTTPException: other
            failures (no route, HTTP errors, timeouts).
    """
    folder = osp.dirname(osp.abspath(dest))
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get('Content-Length') or 0)
        free = _free_bytes(folder)
        if total > free:
            raise DiskFullError(
                _no_space(folder, f'downloading {url}', total, free))
        done, shown = 0, -5
        try:
            with open(dest, 'wb') as out:
                while True:
                    block = response.read(1 << 20)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if total and done * 100 // total >= shown + 5:
                        shown = done * 100 // total
                        log(f'  {shown:3d}% of {total / 2**20:.0f} MiB')
        except OSError as error:
            if error.errno in _NO_SPACE:
                raise DiskFullError(
                    _no_space(folder, f'downloading {url}', total,
                              _free_bytes(folder))) from error
            raise
    if total and done != total:
        raise ConnectionError(f'the connection closed after {done:,} of '
                              f'{total:,} bytes')


def _remove(path: str) -> None:
    """Delete ``path`` if it is there (a file or a link)."""
    if osp.lexists(path):
        os.remove(path)


def download_archive(archive: Archive,
                     folder: str,
                     log: Callable[[str], None] = print) -> str:
    """``folder/<filename>``, fetched unless it is there and verifies.

    Raises:
        DownloadError: every URL failed or sent less than it announced,
            the disk is full, or the file's MD5 is not the published one
            (the file is deleted then).
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
        except DownloadError:
            _remove(part)
            raise
        except (urllib.error.URLError, OSError, ValueError,
                http.client.HTTPException) as error:
            failures.append(f'{url}: {getattr(error, "reason", error)}')
            _remove(part)
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
            raise ArchiveError(
                f'{archive} holds the path {name!r}, which leads outside the '
                'folder it is unpacked into; refusing to unpack it')


def unpacked_size(path: str) -> int:
    """The bytes a .zip or .tar(.gz) unpacks to, from its index.

    Raises:
        ArchiveError: ``path`` is not an archive or its index is damaged.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return sum(info.file_size for info in zf.infolist())
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as tf:
                return sum(member.size for member in tf.getmembers()
                           if member.isfile())
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError,
            OSError) as error:
        raise ArchiveError(f'{path} cannot be unpacked: {error}') from error
    raise ArchiveError(f'{path} cannot be unpacked: it is neither a zip '
                       'nor a tar archive')


def unpack(path: str, dest: str) -> None:
    """Unpack a .zip or .tar(.gz) into ``dest``, refusing members that
    would land outside it (and, for tars, links that lead outside it).

    Raises:
        ArchiveError: naming ``path``: not an archive, a damaged or
            hostile one (members or links leading outside ``dest``).
        DiskFullError: the disk of ``dest`` is full.
        DownloadError: another failure to write (permissions, say).
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                _safe_members(zf.namelist(), path)
                zf.extractall(dest)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as tf:
                _safe_members(tf.getnames(), path)
                tf.extractall(dest, filter='data')
        else:
            raise ArchiveError(f'{path} cannot be unpacked: it is neither a '
                               'zip nor a tar archive')
    except OSError as error:
        if error.errno in _NO_SPACE:
            raise DiskFullError(
                _no_space(dest, f'unpacking {path}', unpacked_size(path),
                          _free_bytes(dest))) from error
        if error.errno == errno.EINVAL:
            # zipfile seeks to a negative offset in a cut-short member.
            raise ArchiveError(
                f'{path} cannot be unpacked: {error}') from error
        raise DownloadError(
            f'{path} cannot be unpacked: {error}') from error
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError,
            ValueError) as error:
        # tarfile's FilterError (a link or member leading outside) is a
        # TarError; a damaged zip raises BadZipFile, zlib.error or EOFError.
        raise ArchiveError(
            f'{path} cannot be unpacked: {error}') from error


def merge_conflicts(src: str, dst: str) -> List[str]:
    """The paths under ``dst`` that moving the tree ``src`` into it would
    replace: a file (or link) where ``src`` has something else, or a
    folder where ``src`` has a file. A file with the same content is
    none."""
    conflicts = []
    for name in sorted(os.listdir(src)):
        source, target = osp.join(src, name), osp.join(dst, name)
        if not osp.lexists(target):
            continue
        if osp.isdir(source) and not osp.islink(source):
            if osp.isdir(target) and not osp.islink(target):
                conflicts += merge_conflicts(source, target)
            else:
                conflicts.append(target)
        elif not (osp.isfile(target) and not osp.islink(target)
                  and osp.isfile(source)
                  and filecmp.cmp(source, target, shallow=False)):
            conflicts.append(target)
    return conflicts


def merge_into(src: str, dst: str) -> None:
    """Move the tree ``src`` into ``dst``: entries ``dst`` lacks are moved,
    folders both have are merged, files both have with the same content
    are kept.

    Raises:
        DownloadError: listing every path of ``dst`` that would be
            replaced; nothing was moved.
    """
    conflicts = merge_conflicts(src, dst) if osp.isdir(dst) else []
    if conflicts:
        shown = '\n'.join(f'  {path}' for path in conflicts[:20])
        more = (f'\n  ... and {len(conflicts) - 20} more'
                if len(conflicts) > 20 else '')
        raise DownloadError(
            f'{len(conflicts)} path(s) already exist with other content:\n'
            f'{shown}{more}\nnothing was moved; remove them (or choose '
            'another --root) to install there')
    _move_tree(src, dst)


def _move_tree(src: str, dst: str) -> None:
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        source, target = osp.join(src, name), osp.join(dst, name)
        if not osp.lexists(target):
            os.replace(source, target)
        elif osp.isdir(source) and not osp.islink(source):
            _move_tree(source, target)
        # else: the same file is there already (merge_conflicts).


def marker_file(name: str, root: str) -> str:
    """The file a finished install of ``name`` writes last."""
    return osp.join(root, f'.{name}.installed')


def is_installed(spec: DatasetSpec, root: str, name: str) -> bool:
    """Whether the install of ``name`` finished (its marker is there) and
    the expected paths are still there."""
    return osp.isfile(marker_file(name, root)) and all(
        osp.exists(osp.join(root, p)) for p in spec.expected)


def _tree_size(path: str) -> int:
    return sum(
        osp.getsize(osp.join(folder, f)) for folder, _, files in os.walk(path)
        for f in files if not osp.islink(osp.join(folder, f)))


def remove_stale_copies(name: str, root: str,
                        log: Callable[[str], None] = print) -> None:
    """Delete the temporary folders ``<root>/.<name>-<pid>-*`` of installs
    whose process is gone (killed while unpacking); those of a running
    process are listed and kept."""
    if not osp.isdir(root):
        return
    for entry in sorted(os.listdir(root)):
        path = osp.join(root, entry)
        if not entry.startswith(f'.{name}-') or not osp.isdir(path):
            continue
        pid = entry[len(name) + 2:].split('-', 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _running(int(pid)):
            log(f'{path} ({_tree_size(path):,} bytes) belongs to process '
                f'{pid}, which is still running: left as it is')
            continue
        size = _tree_size(path)
        shutil.rmtree(path, ignore_errors=True)
        log(f'removed {path} ({size:,} bytes), the temporary copy of an '
            'install that was interrupted')


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _unverified(spec: DatasetSpec, paths: Sequence[str],
                only: Optional[Sequence[str]] = None) -> List[str]:
    """The archives of ``paths`` (``paths[i]`` is that of
    ``spec.archives[i]``), or of those among ``only``, that have no
    published MD5: their content is checked only by unpacking them."""
    return [
        p for a, p in zip(spec.archives, paths)
        if a.md5 is None and (only is None or p in only)
    ]


def _deleted(paths: Sequence[str]) -> str:
    """Delete ``paths``; the sentence saying so."""
    for path in paths:
        _remove(path)
    if not paths:
        return ''
    names = ', '.join(osp.basename(p) for p in paths)
    return (f'; {names} was deleted, so that the next run downloads it '
            'again')


def _check_unpack_space(spec: DatasetSpec, paths: Sequence[str],
                        root: str, downloads: str) -> None:
    """Raise unless the disk of ``root`` can hold the unpacked archives;
    an archive whose index cannot be read fails here already."""
    needed = 0
    for path in paths:
        try:
            needed += unpacked_size(path)
        except ArchiveError as error:
            raise ArchiveError(
                f'{error}{_deleted(_unverified(spec, paths, [path]))}'
            ) from error
    free = _free_bytes(root)
    if needed > free:
        names = ', '.join(osp.basename(p) for p in paths)
        verb = 'unpacks' if len(paths) == 1 else 'unpack'
        raise DiskFullError(
            f'no space left to unpack: {names} {verb} to {needed:,} bytes '
            f'and the disk of {root} has {free:,} bytes free. Free some '
            'space (or choose another --root) and run the command again; '
            f'the downloaded archives are kept in {downloads}.')


def _write_marker(name: str, root: str, paths: Sequence[str]) -> None:
    marker = marker_file(name, root)
    with open(marker + '.tmp', 'w') as f:
        f.write('\n'.join(osp.basename(p) for p in paths) + '\n')
    os.replace(marker + '.tmp', marker)


def install(name: str,
            root: str = 'data',
            keep_archives: bool = False,
            log: Callable[[str], None] = print) -> List[str]:
    """Download, verify and unpack dataset ``name`` under ``root`` (see
    the module docstring for the order and what is cleaned up).

    Returns:
        The expected paths (see ``DatasetSpec.expected``), now present.
    Raises:
        DownloadError: an unknown name, a failed or cut-short download or
            checksum, an archive that does not unpack (or not to the
            expected layout), files in the way (all listed), or a full
            disk (:class:`DiskFullError`, naming the space needed).
    """
    if name not in DOWNLOADS:
        raise DownloadError(f'unknown dataset {name!r}; choose one of '
                            f'{", ".join(sorted(DOWNLOADS))}')
    spec = DOWNLOADS[name]
    expected = [osp.join(root, p) for p in spec.expected]
    if is_installed(spec, root, name):
        log(f'{name} is already in {root}: {", ".join(expected)}')
        return expected
    remove_stale_copies(name, root, log)
    present = [p for p in expected if osp.exists(p)]
    if present:
        log(f'{", ".join(present)} exist but {marker_file(name, root)}, '
            'which an install writes when it has finished, does not: '
            f'installing {name} again (files already there with the same '
            'content are kept)')
    downloads = osp.join(root, '.downloads')
    paths = [download_archive(a, downloads, log) for a in spec.archives]
    _check_unpack_space(spec, paths, root, downloads)
    tmp = tempfile.mkdtemp(prefix=f'.{name}-{os.getpid()}-', dir=root)
    try:
        for path in paths:
            log(f'unpacking {osp.basename(path)}')
            try:
                unpack(path, tmp)
            except ArchiveError as error:
                raise ArchiveError(
                    f'{error}{_deleted(_unverified(spec, paths, [path]))}'
                ) from error
        for old, new in spec.rename.items():
            if osp.exists(osp.join(tmp, old)):
                os.makedirs(osp.dirname(osp.join(tmp, new)) or tmp,
                            exist_ok=True)
                os.replace(osp.join(tmp, old), osp.join(tmp, new))
        lacking = [p for p in spec.expected
                   if not osp.exists(osp.join(tmp, p))]
        if lacking:
            raise ArchiveError(
                f'the archives of {name} do not hold {", ".join(lacking)}; '
                'they may have changed upstream (docs/data.md lists what is '
                f'expected){_deleted(_unverified(spec, paths))}')
        if spec.tree_sha256 is not None:
            folders, digest = spec.tree_sha256
            got = tree_digest(tmp, folders)
            if got != digest:
                raise ArchiveError(
                    f'the files of {name} differ from the known ones (digest '
                    f'{got}, expected {digest}): the upstream repository '
                    'changed or the download is damaged; nothing was '
                    f'installed{_deleted(_unverified(spec, paths))}')
        merge_into(tmp, root)
        # Last: only now is the dataset installed.
        _write_marker(name, root, paths)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not keep_archives:
        for path in paths:
            os.remove(path)
        if osp.isdir(downloads) and not os.listdir(downloads):
            os.rmdir(downloads)
    log(f'{name} installed: {", ".join(expected)}')
    return expected
