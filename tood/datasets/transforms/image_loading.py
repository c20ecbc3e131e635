"""Image loading that names the file when it fails.

mmcv's ``LoadImageFromFile`` already decodes with OpenCV's
``IMREAD_COLOR`` (``color_type='color'``), which gives 3-channel 8-bit BGR
for every input: grayscale is replicated to three channels, the alpha
channel of RGBA is dropped, 16-bit images are scaled to 8 bits (value /
256) and the EXIF orientation tag is applied. What it lacks is a usable
error: a missing file raises deep inside the file backend, an empty one
fails an OpenCV assertion without a name, a corrupt one an ``assert``.
"""
import io
import os
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmengine import fileio
from PIL import Image

from tood.errors import ImageLoadError
from tood.registry import TRANSFORMS


_JPEG_START, _JPEG_END = b'\xff\xd8', b'\xff\xd9'
_PNG_START, _PNG_END = b'\x89PNG\r\n\x1a\n', b'IEND\xaeB`\x82'


def _looks_truncated(data: bytes) -> bool:
    """Whether a JPEG or PNG stops before its end marker.

    Only a hint: some cameras append data after a JPEG's end marker, so
    a JPEG that decodes is confirmed with Pillow before it is rejected.
    """
    # Copy tools pad with zeros; ignore such tails.
    tail = data[-64:].rstrip(b'\x00\r\n ')
    if data.startswith(_JPEG_START):
        return not tail.endswith(_JPEG_END)
    if data.startswith(_PNG_START):
        return not tail.endswith(_PNG_END)
    return False


def opencv_pixel_limit() -> int:
    """The most pixels OpenCV decodes: its ``OPENCV_IO_MAX_IMAGE_PIXELS``
    environment variable, read when OpenCV is loaded, default 2**30."""
    try:
        return int(os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS', 1 << 30))
    except ValueError:
        return 1 << 30


def _pillow_error(data: bytes) -> Optional[str]:
    """Pillow's complaint about decoding ``data`` in full, if any."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception as error:  # Pillow raises OSError, SyntaxError, ...
        return str(error) or type(error).__name__
    return None


@TRANSFORMS.register_module()
class LoadImageFromFile(MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments) with clear errors.

    Raises :class:`ImageLoadError`, naming the file, for a file that is
    missing, unreadable, empty, truncated or not a decodable image, and for
    an image whose size differs from the ``height`` and ``width`` the
    dataset recorded for it (its boxes would not fit it; a width and height
    that are swapped point at an EXIF rotation the annotation tool did not
    apply). ``CocoDataset`` skips such an image while training and stops on
    it in ``test_mode``. With ``ignore_empty=True`` the transform returns
    None instead of raising, as mmcv's does.

    Added keys: img (H, W, 3) uint8 BGR for the default ``color_type``
    (float32 with ``to_float32``), img_shape, ori_shape.
    """

    def transform(self, results: dict) -> Optional[dict]:
        try:
            img = self._load(results['img_path'])
            self._check_size(img, results)
        except ImageLoadError:
            if self.ignore_empty:
                return None
            raise
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _read(self, path: str) -> bytes:
        try:
            if self.file_client_args is not None:
                client = fileio.FileClient.infer_client(
                    self.file_client_args, path)
                return client.get(path)
            return fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            raise ImageLoadError(f'{path}: no such file') from None
        except OSError as error:
            reason = error.strerror or error
            raise ImageLoadError(
                f'{path}: cannot be read ({reason})') from None

    def _load(self, path: str) -> np.ndarray:
        data = self._read(path)
        if len(data) == 0:
            raise ImageLoadError(f'{path}: the file is empty (0 bytes)')
        try:
            img = mmcv.imfrombytes(
                data, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as error:  # Pillow and turbojpeg raise their own
            img, reason = None, str(error)
        else:
            reason = ''
        truncated = _looks_truncated(data)
        if img is not None and truncated:
            # Older OpenCV versions fill a truncated JPEG with grey instead
            # of failing; Pillow tells a cut file from an appended trailer.
            reason = _pillow_error(data)
            if reason is None:
                truncated = False
            else:
                img = None
        if img is None and truncated:
            raise ImageLoadError(
                f'{path}: the image is truncated (its data stops before the '
                f'end marker; an incomplete download or copy?) {reason}'.
                strip())
        if img is None and 'CV_IO_MAX_IMAGE_PIXELS' in reason:
            raise ImageLoadError(
                f'{path}: the image has more pixels than OpenCV decodes '
                f'({opencv_pixel_limit():,}): set the environment variable '
                'OPENCV_IO_MAX_IMAGE_PIXELS to at least its width x height '
                'before starting')
        if img is None:
            raise ImageLoadError(
                f'{path}: not an image that can be decoded (corrupt or not '
                f'an image; it starts with {data[:8]!r}) {reason}'.strip())
        return img

    @staticmethod
    def _check_size(img: np.ndarray, results: dict) -> None:
        expected = (results.get('height'), results.get('width'))
        if None in expected or tuple(img.shape[:2]) == expected:
            return
        path, (h, w) = results['img_path'], img.shape[:2]
        hint = ''
        if (w, h) == expected:
            hint = (' Width and height are swapped: the annotations were '
                    'probably made without applying the EXIF orientation; '
                    "load with color_type='color_ignore_orientation' to "
                    'ignore it as well.')
        raise ImageLoadError(
            f'{path}: the image is {w}x{h} (width x height) but the '
            f'annotation file says {expected[1]}x{expected[0]}, so its boxes '
            f'would not fit it.{hint}')
