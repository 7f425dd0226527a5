"""ICC colour profiles of still images, read from and written into the file bytes.

PyAV 18 crashes at interpreter exit once a frame's ICC side data has been read, so the
profile is taken from the container instead: a PNG's ``iCCP`` chunk, a JPEG's ``APP2
ICC_PROFILE`` segments, a WebP's ``ICCP`` chunk. It goes back into PNG and JPEG outputs after
encoding, before the file is published.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Callable

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_ICC_MARKER = b"ICC_PROFILE\x00"
# Profile bytes per APP2 segment: 65535 less the length field (2) and the marker, seq, count.
_JPEG_ICC_CHUNK = 65535 - 2 - len(_JPEG_ICC_MARKER) - 2
_MAX_PROFILE = 64 << 20  # a larger "profile" is damage, not colour
_JPEG_MAX_PROFILE = 255 * _JPEG_ICC_CHUNK  # APP2 numbers its pieces 1..255


class _Damaged(Exception):
    """A profile is there but cannot be used (the reason, for the user)."""


class _Unfinished(Exception):
    """The bytes end before the picture data: a profile may come later."""


@dataclasses.dataclass(frozen=True)
class IccProfile:
    """The profile bytes and a name for messages (its description, else the PNG name).
    ``problem`` (with no bytes): why the input's profile cannot be kept, for a warning."""

    data: bytes
    name: str
    problem: str = ""
    source: str = ""  # the input it came from, for messages

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "bytes": len(self.data), "problem": self.problem or None}


def read_icc(head: bytes, *, whole: bool = True) -> IccProfile | None:
    """The ICC profile of a PNG, JPEG or WebP image whose first bytes are ``head`` (the whole
    file, or at least everything before the picture data), or ``None``. ``whole=False``: the
    input goes on past ``head``, so a profile may lie beyond it. A profile that is there but
    unusable (damaged, not RGB, or not searched to its place) has a ``problem``."""
    try:
        if head.startswith(_PNG_SIGNATURE):
            found = _png_icc(head)
        elif head.startswith(b"\xff\xd8"):
            found = _jpeg_icc(head)
        elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            found = _webp_icc(head)
        else:
            return None
    except _Damaged as e:
        return IccProfile(b"", "ICC profile", f"its ICC colour profile is damaged ({e})")
    except _Unfinished:
        if whole:
            return None  # a truncated file: the decoder says so
        return IccProfile(
            b"",
            "ICC profile",
            f"its first {len(head) >> 20} MiB hold no picture data, so an ICC colour profile "
            "after them was not looked for",
        )
    if found is None:
        return None
    data, fallback = found
    name = profile_description(data) or fallback or f"{len(data)}-byte profile"
    space = data[16:20].decode("latin-1").strip() if len(data) >= 20 else ""
    if space != "RGB":  # outputs are RGB: a GRAY or CMYK profile would be invalid there
        return IccProfile(
            b"", name, f"its ICC colour profile '{name}' is for {space or 'no'} colour, not RGB"
        )
    return IccProfile(data, name)


def _png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """``(offset, type, body)`` of each chunk, up to and including IEND (or the data's end)."""
    out = []
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            break
        out.append((pos, kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    return out


def _png_icc(data: bytes) -> tuple[bytes, str] | None:
    for pos, kind, body in _png_chunks(data):
        if kind in (b"IDAT", b"IEND"):
            return None  # iCCP must come before the picture data
        if kind != b"iCCP":
            continue
        (crc,) = struct.unpack_from(">I", data, pos + 8 + len(body))
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise _Damaged("its PNG chunk's checksum is wrong")
        name, sep, rest = body.partition(b"\x00")
        if not sep or not rest or rest[0] != 0:  # compression method 0 (zlib) only
            raise _Damaged("not zlib-compressed")
        d = zlib.decompressobj()
        try:
            profile = d.decompress(rest[1:], _MAX_PROFILE)
        except zlib.error as e:
            raise _Damaged(f"its compressed data is invalid: {e}") from e
        if not d.eof or d.unconsumed_tail:
            raise _Damaged("its compressed data is cut short, or over 64 MiB")
        if not profile:
            raise _Damaged("it is empty")
        return profile, name.decode("latin-1")
    raise _Unfinished


def _jpeg_segments(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(offset, marker, payload)`` of the segments between SOI and the first SOS."""
    out = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or 0xD0 <= marker <= 0xD9:  # SOS, RSTn, SOI/EOI: no more headers
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > len(data):
            break
        out.append((pos, marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
    return out


def _jpeg_icc(data: bytes) -> tuple[bytes, str] | None:
    parts: dict[int, bytes] = {}
    count = 0
    for _, marker, payload in _jpeg_segments(data):
        if marker != 0xE2 or not payload.startswith(_JPEG_ICC_MARKER):
            continue
        head = len(_JPEG_ICC_MARKER)
        if len(payload) < head + 2:
            continue
        seq, count = payload[head], payload[head + 1]
        parts[seq] = payload[head + 2 :]
    if parts and sorted(parts) != list(range(1, count + 1)):
        raise _Damaged(f"its JPEG pieces are missing or mis-numbered: {sorted(parts)} of {count}")
    if not parts:
        end = data.find(b"\xff\xda", 2)  # the picture data (SOS), after all headers
        if end < 0:
            raise _Unfinished
        return None
    return b"".join(parts[i] for i in range(1, count + 1)), ""


def _webp_icc(data: bytes) -> tuple[bytes, str] | None:
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]
        if len(body) < size:
            raise _Unfinished
        if kind == b"ICCP":
            return (body, "") if body else None
        if kind in (b"VP8 ", b"VP8L", b"ANIM"):
            return None  # the profile chunk comes before the picture
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    raise _Unfinished


def profile_description(data: bytes) -> str | None:
    """The profile's ``desc`` tag (ICC v2 ``desc`` or v4 ``mluc`` text), if it has one."""
    if len(data) < 132:
        return None
    (n,) = struct.unpack_from(">I", data, 128)
    for i in range(min(n, 1000)):
        at = 132 + 12 * i
        if at + 12 > len(data):
            return None
        sig, off, size = struct.unpack_from(">4sII", data, at)
        if sig == b"desc":
            return _text_tag(data[off : off + size])
    return None


def _text_tag(tag: bytes) -> str | None:
    kind = tag[:4]
    if kind == b"desc" and len(tag) >= 12:
        (count,) = struct.unpack_from(">I", tag, 8)
        text = tag[12 : 12 + count].split(b"\x00", 1)[0].decode("latin-1")
    elif kind == b"mluc" and len(tag) >= 28:
        length, off = struct.unpack_from(">II", tag, 20)  # the first record
        text = tag[off : off + length].decode("utf-16-be", "replace")
    else:
        return None
    text = text.strip("\x00").strip()
    return text or None


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png_name(name: str) -> bytes:
    """An iCCP profile name: 1 to 79 Latin-1 printable characters, no leading/trailing or
    double spaces."""
    raw = name.encode("latin-1", "replace")
    clean = bytes(b for b in raw if 32 <= b <= 126 or b >= 161)
    clean = b" ".join(clean.split())[:79].strip()
    return clean or b"ICC profile"


def embed_png(png: bytes, profile: IccProfile) -> bytes:
    """``png`` with ``profile`` as its iCCP chunk, right after IHDR (any sRGB or iCCP chunk
    the encoder wrote is replaced: a PNG holds one colour space)."""
    chunks = _png_chunks(png)
    if not chunks or chunks[0][1] != b"IHDR":
        raise ValueError("not a PNG stream")
    body = _png_name(profile.name) + b"\x00\x00" + zlib.compress(profile.data, 9)
    out = [_PNG_SIGNATURE]
    for pos, kind, chunk in chunks:
        if kind in (b"iCCP", b"sRGB"):
            continue
        out.append(png[pos : pos + 12 + len(chunk)])
        if kind == b"IHDR":
            out.append(_png_chunk(b"iCCP", body))
    return b"".join(out)


def embed_jpeg(jpeg: bytes, profile: IccProfile) -> bytes:
    """``jpeg`` with ``profile`` in APP2 ICC_PROFILE segments after SOI and the APP0 (JFIF)
    segment; APP2 ICC segments the encoder wrote are replaced."""
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG stream")
    pieces = [
        profile.data[i : i + _JPEG_ICC_CHUNK] for i in range(0, len(profile.data), _JPEG_ICC_CHUNK)
    ]
    if not pieces or len(pieces) > 255:
        raise ValueError(f"an ICC profile of {len(profile.data)} bytes does not fit a JPEG")
    app2 = b"".join(
        b"\xff\xe2"
        + struct.pack(">H", 2 + len(_JPEG_ICC_MARKER) + 2 + len(p))
        + _JPEG_ICC_MARKER
        + bytes([i, len(pieces)])
        + p
        for i, p in enumerate(pieces, 1)
    )
    body = jpeg
    for pos, marker, payload in reversed(_jpeg_segments(jpeg)):
        if marker == 0xE2 and payload.startswith(_JPEG_ICC_MARKER):
            body = body[:pos] + body[pos + 4 + len(payload) :]
    insert = 2
    for pos, marker, payload in _jpeg_segments(body):
        if marker != 0xE0 or pos != insert:
            break
        insert = pos + 4 + len(payload)  # after SOI and the APP0 (JFIF) segments
    return body[:insert] + app2 + body[insert:]


# The start of an image file that is searched for a profile (they come before the picture).
_HEAD_BYTES = 64 << 20


def input_icc(
    src: object, head: bytes | None, name: str, *, whole: bool = True
) -> IccProfile | None:
    """The ICC profile of the image input ``name``: read from the file at path ``src``, or
    from ``head``, the first bytes of a piped input (``whole``: all of it)."""
    if head is None:
        assert isinstance(src, str)
        with open(src, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
        whole = len(head) < _HEAD_BYTES
    icc = read_icc(head, whole=whole)
    return None if icc is None else dataclasses.replace(icc, source=name)


def kept_icc(icc: IccProfile | None, ext: str, warn: Callable[[str], None]) -> IccProfile | None:
    """The profile to write into an ``ext`` image output, or ``None``, with a warning naming
    the input and why when the input's profile is not kept."""
    if icc is None:
        return None
    if icc.problem:
        warn(f"{icc.source}: {icc.problem}; the output is written without it")
        return None
    if ext in (".jpg", ".jpeg") and len(icc.data) > _JPEG_MAX_PROFILE:
        warn(
            f"{icc.source}: its ICC colour profile '{icc.name}' ({len(icc.data)} bytes) is too big "
            f"for a JPEG (at most {_JPEG_MAX_PROFILE} bytes); the output is written without "
            "it: write a .png image to keep it"
        )
        return None
    return icc
