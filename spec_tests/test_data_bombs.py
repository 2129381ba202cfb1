"""Decompression bombs in a folder dataset (fnn.data.FolderSource / fnn.data.load(folder)).

A PNG of a few bytes can declare billions of pixels. Pillow raises DecompressionBombError above
2 x ``PIL.Image.MAX_IMAGE_PIXELS`` and only warns between 1x and 2x; the folder loader refuses
both before decoding, with an error that names the file. The files are crafted here: a real
1 x 1 PNG whose IHDR chunk is rewritten to declare a huge size.
"""

import io
import struct
import zlib

import numpy as np
import pytest

from fnn import data

Image = pytest.importorskip("PIL.Image")


def _png_declaring(width, height):
    """A 1 x 1 grey PNG whose header claims ``width x height`` (CRC fixed, pixels unchanged)."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    assert png[12:16] == b"IHDR"
    struct.pack_into(">II", png, 16, width, height)
    struct.pack_into(">I", png, 29, zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def _folder(tmp_path, bomb):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / cls / "ok.png")
    (tmp_path / "b" / "zz_bomb.png").write_bytes(bomb)
    return tmp_path


def test_png_declaring_billions_of_pixels_is_named(tmp_path):
    root = _folder(tmp_path, _png_declaring(100_000, 100_000))  # 10**10 pixels from 70 bytes
    src = data.FolderSource(root)
    assert src[0]["image"].shape == (4, 4, 3)
    with pytest.raises(ValueError, match=r"Cannot read image file '.*zz_bomb\.png'.*pixels"):
        src[2]
    with pytest.raises(ValueError, match=r"zz_bomb\.png"):
        data.load(str(root))


def test_bomb_pillow_only_warns_about_is_refused(tmp_path, monkeypatch):
    """Between MAX_IMAGE_PIXELS and twice that, Pillow warns and would decode everything."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    bomb = io.BytesIO()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(bomb, format="PNG")  # 1600 pixels
    src = data.FolderSource(_folder(tmp_path, bomb.getvalue()))
    with (
        pytest.warns(Image.DecompressionBombWarning),
        pytest.raises(
            ValueError,
            match=r"zz_bomb\.png.*40 x 40 = 1600 pixels, more than .*MAX_IMAGE_PIXELS = 1000",
        ),
    ):
        src[2]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the user's documented opt-out
    assert src[2]["image"].shape == (40, 40, 3)
