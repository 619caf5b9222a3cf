"""An Ed25519 key pair from a 32-byte seed, written as OpenSSH files, in pure Python.

Every host of an MPI job must hold the same SSH key without a registry or shared volume; a key
derived from a seed all hosts can compute is the way (see ssh.py for where the seed comes from).
The curve arithmetic follows RFC 8032 section 5.1 (public key = clamp(SHA-512(seed)[:32]) * B).
"""

from __future__ import annotations

import base64
import hashlib
import struct

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_BY = (4 * pow(5, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _recover_x(y: int, sign: int) -> int:
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P != 0:
        x = (x * _SQRT_M1) % _P
    if x & 1 != sign:
        x = _P - x
    return x


_BX = _recover_x(_BY, 0)


def _add(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    # Extended twisted Edwards coordinates (X, Y, Z, T), a = -1.
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    k = (y1 - x1) * (y2 - x2) % _P
    l_ = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    zz = 2 * z1 * z2 % _P
    e, f, g, h = l_ - k, zz - c, zz + c, l_ + k
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _multiply(scalar: int) -> tuple[int, int, int, int]:
    result = (0, 1, 1, 0)
    addend = (_BX, _BY, 1, _BX * _BY % _P)
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        scalar >>= 1
    return result


def public_key(seed: bytes) -> bytes:
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    x, y, z, _ = _multiply(int.from_bytes(digest, "little"))
    zinv = pow(z, _P - 2, _P)
    x, y = x * zinv % _P, y * zinv % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def public_line(seed: bytes, comment: str) -> str:
    """The authorized_keys line."""
    blob = _string(b"ssh-ed25519") + _string(public_key(seed))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}\n"


def private_file(seed: bytes, comment: str) -> str:
    """The unencrypted `openssh-key-v1` private key file (what ssh-keygen -N '' writes)."""
    public = public_key(seed)
    blob = _string(b"ssh-ed25519") + _string(public)
    check = struct.unpack(">I", hashlib.sha256(seed).digest()[:4])[0]  # any value; equal twice
    private = struct.pack(">II", check, check) + _string(b"ssh-ed25519") + _string(public)
    private += _string(seed + public) + _string(comment.encode())
    private += bytes(range(1, 1 + (-len(private)) % 8))  # padding 1, 2, 3, ... to a block of 8
    data = b"openssh-key-v1\0" + _string(b"none") + _string(b"none") + _string(b"")
    data += struct.pack(">I", 1) + _string(blob) + _string(private)
    text = base64.b64encode(data).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END OPENSSH PRIVATE KEY-----\n"
    )
