"""tood.datasets.download against a local HTTP server on 127.0.0.1 started
by the tests: downloads cut short, wrong checksums, corrupt and hostile
archives, a full disk, conflicts, interrupted installs."""
import hashlib
import io
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tood.datasets import download
from tood.datasets.download import (Archive, DatasetSpec, DownloadError,
                                    install)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
FILES = {
    'VOC2099/ImageSets/Main/train.txt': b'a\nb\n',
    'VOC2099/Annotations/a.xml': b'<annotation/>',
    'VOC2099/Annotations/b.xml': b'<annotation/>' * 50,
}
EXPECTED = ('VOC2099/ImageSets/Main/train.txt', 'VOC2099/Annotations')


class Server:
    """Serves ``files[path] = bytes``; ``cut[path] = n`` sends only the
    first n bytes (with the full Content-Length) and closes."""

    def __init__(self):
        self.files, self.cut, self.requests = {}, {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):

            def do_GET(self):
                server.requests.append(self.path)
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data[:server.cut.get(self.path, len(data))])
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_port}'
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    server = Server()
    yield server
    server.close()


def zip_bytes(files) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(files, links=()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buffer.getvalue()


def serve(monkeypatch, server, data: bytes, name='toy.zip', md5=False,
          digest=None) -> DatasetSpec:
    """Register dataset 'toy': one archive served by ``server``, checked
    by MD5 (``md5=True``) or, like BCCD, by a digest of its files."""
    server.files[f'/{name}'] = data
    if digest is None and not md5:
        digest = tree_digest_of(FILES)
    spec = DatasetSpec(
        description='toy',
        archives=(Archive(name, (f'{server.url}/{name}', ),
                          hashlib.md5(data).hexdigest() if md5 else None), ),
        expected=EXPECTED,
        tree_sha256=None if md5 else (('VOC2099/Annotations', ), digest))
    monkeypatch.setitem(download.DOWNLOADS, 'toy', spec)
    return spec


def tree_digest_of(files) -> str:
    lines = sorted(f'{path.rsplit("/", 1)[0]}/{path.rsplit("/", 1)[1]}\t'
                   f'{hashlib.sha256(data).hexdigest()}\n'
                   for path, data in files.items()
                   if path.startswith('VOC2099/Annotations/'))
    return hashlib.sha256(''.join(lines).encode()).hexdigest()


def quiet(line):
    pass


def listing(root) -> list:
    return sorted(
        osp.relpath(osp.join(folder, name), root)
        for folder, _, names in os.walk(root) for name in names)


def test_a_download_cut_short_is_refused_and_fetched_again(
        tmp_path, server, monkeypatch):
    data = zip_bytes(FILES)
    serve(monkeypatch, server, data)
    server.cut['/toy.zip'] = len(data) // 2
    root = str(tmp_path / 'data')
    with pytest.raises(DownloadError) as info:
        install('toy', root, log=quiet)
    message = str(info.value)
    assert 'toy.zip could not be downloaded' in message
    assert f'after {len(data) // 2:,} of {len(data):,} bytes' in message
    assert not osp.exists(osp.join(root, '.downloads', 'toy.zip'))
    # The next run downloads it again (no 'already downloaded').
    del server.cut['/toy.zip']
    lines = []
    install('toy', root, log=lines.append)
    assert not any('already downloaded' in line for line in lines)
    assert server.requests == ['/toy.zip', '/toy.zip']
    assert listing(osp.join(root, 'VOC2099')) == sorted(
        osp.relpath(p, 'VOC2099') for p in FILES)


def test_a_wrong_digest_deletes_the_archive_and_says_so(
        tmp_path, server, monkeypatch):
    serve(monkeypatch, server, zip_bytes(FILES), digest='0' * 64)
    root = str(tmp_path / 'data')
    with pytest.raises(DownloadError) as info:
        install('toy', root, log=quiet)
    assert 'differ from the known ones' in str(info.value)
    assert 'toy.zip was deleted' in str(info.value)
    assert listing(root) == []
    with pytest.raises(DownloadError):
        install('toy', root, log=quiet)
    assert server.requests == ['/toy.zip', '/toy.zip']


def test_a_wrong_md5_deletes_the_archive_and_says_so(tmp_path, server,
                                                     monkeypatch):
    spec = serve(monkeypatch, server, zip_bytes(FILES), md5=True)
    server.files['/toy.zip'] = zip_bytes({'other': b'x'})
    with pytest.raises(DownloadError, match=r'toy.zip: MD5 \w+ is not the '
                       f'published {spec.archives[0].md5}; the file was '
                       'deleted'):
        install('toy', str(tmp_path / 'data'), log=quiet)
    assert listing(str(tmp_path / 'data')) == []


@pytest.mark.parametrize('kind', ['garbage', 'bad crc', 'truncated member'])
def test_a_corrupt_zip_is_named_and_deleted(tmp_path, server, monkeypatch,
                                            kind):
    data = zip_bytes(FILES)
    if kind == 'garbage':
        data = b'PK\x03\x04' + b'\x00' * 200
    elif kind == 'bad crc':
        at = data.index(b'<annotation/>')
        data = data[:at] + b'<ANNOTATION/>' + data[at + 13:]
    else:
        data = data[:60] + data[200:]
    serve(monkeypatch, server, data)
    root = str(tmp_path / 'data')
    with pytest.raises(DownloadError) as info:
        install('toy', root, log=quiet)
    message = str(info.value)
    assert 'toy.zip cannot be unpacked' in message
    assert 'toy.zip was deleted' in message
    assert listing(root) == []


def test_a_link_leading_outside_is_refused(tmp_path, server, monkeypatch):
    data = tar_bytes(FILES, links=[('VOC2099/Annotations/c.xml',
                                    '../../../../outside.txt')])
    serve(monkeypatch, server, data, name='toy.tar')
    (tmp_path / 'outside.txt').write_text('not yours')
    root = str(tmp_path / 'data')
    with pytest.raises(DownloadError) as info:
        install('toy', root, log=quiet)
    message = str(info.value)
    assert 'toy.tar cannot be unpacked' in message
    assert 'VOC2099/Annotations/c.xml' in message
    assert listing(root) == []
    assert (tmp_path / 'outside.txt').read_text() == 'not yours'


def test_every_conflict_is_listed_before_anything_moves(
        tmp_path, server, monkeypatch):
    serve(monkeypatch, server, zip_bytes(FILES))
    root = tmp_path / 'data'
    (root / 'VOC2099' / 'Annotations').mkdir(parents=True)
    (root / 'VOC2099' / 'Annotations' / 'a.xml').write_text('mine')
    (root / 'VOC2099' / 'ImageSets').write_text('a file, not a folder')
    with pytest.raises(DownloadError) as info:
        install('toy', str(root), log=quiet)
    message = str(info.value)
    assert str(root / 'VOC2099' / 'Annotations' / 'a.xml') in message
    assert str(root / 'VOC2099' / 'ImageSets') in message
    assert 'nothing was moved' in message
    # b.xml, which had no conflict, was not moved either; the archive
    # is kept for the next run.
    assert listing(str(root)) == ['.downloads/toy.zip',
                                  'VOC2099/Annotations/a.xml',
                                  'VOC2099/ImageSets']


def test_installed_means_the_marker_written_last(tmp_path, server,
                                                 monkeypatch):
    serve(monkeypatch, server, zip_bytes(FILES))
    root = str(tmp_path / 'data')
    install('toy', root, log=quiet)
    assert osp.isfile(osp.join(root, '.toy.installed'))
    lines = []
    install('toy', root, log=lines.append)
    assert 'already in' in lines[-1] and len(server.requests) == 1

    # An install that stopped part-way: the expected paths are there, a
    # file is not, and there is no marker.
    os.remove(osp.join(root, '.toy.installed'))
    os.remove(osp.join(root, 'VOC2099', 'Annotations', 'b.xml'))
    lines = []
    install('toy', root, log=lines.append)
    assert len(server.requests) == 2
    # Files already in place with the same content are no conflict.
    assert listing(osp.join(root, 'VOC2099')) == sorted(
        osp.relpath(p, 'VOC2099') for p in FILES)
    assert osp.isfile(osp.join(root, '.toy.installed'))


CHILD = '''
import json, os, signal, sys
from tood.datasets import download
spec = json.loads(sys.argv[1])
download.DOWNLOADS['toy'] = download.DatasetSpec(
    description='toy',
    archives=(download.Archive('toy.zip', (spec['url'], )), ),
    expected=tuple(spec['expected']),
    tree_sha256=(('VOC2099/Annotations', ), spec['digest']))
unpack = download.unpack


def unpack_then_die(path, dest):
    unpack(path, dest)
    os.kill(os.getpid(), signal.SIGKILL)


download.unpack = unpack_then_die
download.install('toy', sys.argv[2], keep_archives=True)
'''


def test_a_kill_while_unpacking_leaves_nothing_behind_the_next_run(
        tmp_path, server, monkeypatch):
    serve(monkeypatch, server, zip_bytes(FILES))
    root = str(tmp_path / 'data')
    spec = dict(url=f'{server.url}/toy.zip', expected=list(EXPECTED),
                digest=tree_digest_of(FILES))
    proc = subprocess.run(
        [sys.executable, '-c', CHILD, json.dumps(spec), root],
        env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
        timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    hidden = [n for n in os.listdir(root) if n.startswith('.toy-')]
    assert len(hidden) == 1  # the temporary copy SIGKILL left
    lines = []
    install('toy', root, log=lines.append)
    assert any(f'removed {osp.join(root, hidden[0])}' in line
               and 'interrupted' in line for line in lines)
    assert sorted(os.listdir(root)) == ['.toy.installed', 'VOC2099']


# Writing to /dev/full fails with ENOSPC, as on a full disk.
needs_dev_full = pytest.mark.skipif(not osp.exists('/dev/full'),
                                    reason='no /dev/full on this system')


@needs_dev_full
def test_a_full_disk_while_downloading_is_named_with_the_size(
        tmp_path, server, monkeypatch):
    data = zip_bytes(FILES)
    serve(monkeypatch, server, data)
    root = tmp_path / 'data'
    (root / '.downloads').mkdir(parents=True)
    # Every write to the partial download fails as on a full disk.
    os.symlink('/dev/full', root / '.downloads' / 'toy.zip.part')
    with pytest.raises(DownloadError) as info:
        install('toy', str(root), log=quiet)
    message = str(info.value)
    assert 'no space left' in message.lower()
    assert f'{len(data):,} bytes' in message
    assert 'network' not in message


def test_too_little_space_is_named_before_downloading_or_unpacking(
        tmp_path, server, monkeypatch):
    data = zip_bytes(FILES)
    serve(monkeypatch, server, data)
    root = str(tmp_path / 'data')
    usage = download.shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(download.shutil, 'disk_usage',
                        lambda path: usage._replace(free=10))
    with pytest.raises(DownloadError, match=f'needs {len(data):,} bytes.*'
                       '10 bytes free'):
        install('toy', root, log=quiet)
    monkeypatch.undo()
    serve(monkeypatch, server, data)
    download.download_archive(download.DOWNLOADS['toy'].archives[0],
                              osp.join(root, '.downloads'), quiet)
    monkeypatch.setattr(download.shutil, 'disk_usage',
                        lambda path: usage._replace(free=10))
    unpacked = sum(len(v) for v in FILES.values())
    with pytest.raises(DownloadError, match=f'toy.zip unpacks to '
                       f'{unpacked:,} bytes.*10 bytes free'):
        install('toy', root, log=quiet)
    # The archive is fine: it is kept for the next run.
    assert osp.isfile(osp.join(root, '.downloads', 'toy.zip'))


@needs_dev_full
def test_a_full_disk_while_unpacking_is_named(tmp_path):
    archive = str(tmp_path / 'toy.zip')
    with open(archive, 'wb') as f:
        f.write(zip_bytes(FILES))
    dest = tmp_path / 'dest' / 'VOC2099' / 'Annotations'
    dest.mkdir(parents=True)
    os.symlink('/dev/full', dest / 'a.xml')
    with pytest.raises(DownloadError) as info:
        download.unpack(archive, str(tmp_path / 'dest'))
    assert f'no space left on the disk of {tmp_path / "dest"} while ' \
        f'unpacking {archive}' in str(info.value)


def test_the_tool_prints_one_message(tmp_path, server, monkeypatch, capsys):
    import runpy
    data = zip_bytes(FILES)
    serve(monkeypatch, server, data)
    server.cut['/toy.zip'] = 10
    main = runpy.run_path(osp.join(REPO, 'tools', 'misc',
                                   'download_dataset.py'))['main']
    with pytest.raises(SystemExit) as info:
        main(['toy', '--root', str(tmp_path / 'data')])
    assert 'toy.zip could not be downloaded' in str(info.value.code)


def test_only_the_archive_that_failed_without_an_md5_is_deleted(
        tmp_path, server, monkeypatch):
    good = tar_bytes({'VOC2099/ImageSets/Main/train.txt': b'a\n'})
    server.files['/a.tar'] = good
    server.files['/b.zip'] = b'PK\x03\x04' + b'\x00' * 200
    monkeypatch.setitem(download.DOWNLOADS, 'toy', DatasetSpec(
        description='toy',
        archives=(Archive('a.tar', (f'{server.url}/a.tar', ),
                          hashlib.md5(good).hexdigest()),
                  Archive('b.zip', (f'{server.url}/b.zip', ))),
        expected=EXPECTED))
    root = str(tmp_path / 'data')
    with pytest.raises(DownloadError) as info:
        install('toy', root, log=quiet)
    assert 'b.zip cannot be unpacked' in str(info.value)
    assert 'b.zip was deleted' in str(info.value)
    assert 'a.tar' not in str(info.value).split('cannot be unpacked')[1]
    assert listing(root) == ['.downloads/a.tar']
