"""safetensors reader/writer in pure Python + numpy (plain or gzip-compressed files).

Format (golden-format.md, "safetensors in one paragraph"): an 8-byte little-endian u64 N,
N bytes of JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}},
then the byte buffer.  Data are row-major little-endian.

Reading decodes every tensor to a numpy array:
  F64 F32 F16          -> float64 (exact widening)
  BF16                 -> float64 (exact: bf16 bits placed in the top half of a binary32)
  F8_E4M3              -> float64 (E4M3FN: bias 7, no infinities, S.1111.111 = NaN)
  F8_E8M0              -> float64 (2^(code-127); code 255 = NaN)
  I64 I32 I8 U8        -> int64
  BOOL                 -> bool
Use `raw=True` to get the undecoded numpy array (uint16 for BF16, uint8 for fp8 codes).

Writing takes {name: (dtype, array)} or {name: array} (dtype inferred: float -> F32, int ->
I64, bool -> BOOL) and encodes BF16 with round-to-nearest-even from any float input.
"""
import gzip
import json
import struct

import numpy as np

_PLAIN = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I8": "i1", "U8": "u1", "BOOL": "u1",
    "BF16": "<u2", "F8_E4M3": "u1", "F8_E8M0": "u1",
}
_SIZE = {k: np.dtype(v).itemsize for k, v in _PLAIN.items()}


def e4m3_table():
    """All 256 E4M3FN codes as float64 (code 0x7F/0xFF = NaN)."""
    codes = np.arange(256)
    s = np.where(codes & 0x80, -1.0, 1.0)
    e = (codes >> 3) & 0xF
    m = codes & 0x7
    val = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1.0 + m / 8.0) * np.exp2(e - 7.0))
    val = s * val
    val[(e == 0xF) & (m == 0x7)] = np.nan
    return val


E4M3_VALUES = e4m3_table()


def bf16_bits_to_f64(bits):
    """uint16 bf16 bit patterns -> float64 (exact)."""
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32).astype(np.float64)


def f64_to_bf16_bits(x):
    """Any float -> bf16 bit patterns, round to nearest even (NaN kept as a quiet NaN)."""
    x = np.asarray(x, dtype=np.float64)
    # Two-step rounding f64->f32->bf16 can double-round; round directly from f64 instead.
    from numerics import round_bf16  # local import: numerics is a sibling module
    f = round_bf16(x).astype(np.float32)
    bits = f.view(np.uint32) >> 16
    return bits.astype(np.uint16)


def _open_bytes(path):
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        return f.read()


class SafeTensors:
    """A loaded file: .meta (dict of str), .names, .info(name), .get(name, raw=False)."""

    def __init__(self, path):
        self.path = path
        blob = _open_bytes(path)
        if len(blob) < 8:
            raise ValueError(f"{path}: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", blob[:8])
        if 8 + n > len(blob):
            raise ValueError(f"{path}: header length {n} runs past the end of the file")
        header = json.loads(blob[8:8 + n].decode("utf-8"))
        self.meta = header.pop("__metadata__", {}) or {}
        self.header = header
        self._data = memoryview(blob)[8 + n:]
        for name, info in header.items():
            dt = info.get("dtype")
            if dt not in _PLAIN:
                raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
            b, e = info["data_offsets"]
            count = int(np.prod(info["shape"], dtype=np.int64))
            if not (0 <= b <= e <= len(self._data)) or (e - b) != count * _SIZE[dt]:
                raise ValueError(f"{path}: tensor {name}: data_offsets {b},{e} do not match "
                                 f"dtype {dt} x shape {info['shape']} inside a {len(self._data)}-byte buffer")
        self._cache = {}

    @property
    def names(self):
        return list(self.header.keys())

    def __contains__(self, name):
        return name in self.header

    def info(self, name):
        return self.header[name]

    def get(self, name, raw=False):
        if name not in self.header:
            raise KeyError(f"{self.path}: no tensor named {name}")
        key = (name, raw)
        if key in self._cache:
            return self._cache[key]
        info = self.header[name]
        dt, shape = info["dtype"], info["shape"]
        b, e = info["data_offsets"]
        a = np.frombuffer(self._data[b:e], dtype=np.dtype(_PLAIN[dt])).reshape(shape)
        if not raw:
            if dt in ("F64", "F32", "F16"):
                a = a.astype(np.float64)
            elif dt == "BF16":
                a = bf16_bits_to_f64(a)
            elif dt == "F8_E4M3":
                a = E4M3_VALUES[a]
            elif dt == "F8_E8M0":
                a = np.where(a == 255, np.nan, np.exp2(a.astype(np.float64) - 127.0))
            elif dt == "BOOL":
                a = a.astype(bool)
            else:
                a = a.astype(np.int64)
        self._cache[key] = a
        return a


def load(path):
    return SafeTensors(path)


def _encode(dtype, arr):
    arr = np.asarray(arr)
    if dtype == "BF16":
        return np.ascontiguousarray(f64_to_bf16_bits(arr)).astype("<u2").tobytes()
    if dtype in ("F8_E4M3", "F8_E8M0"):
        if arr.dtype != np.uint8:
            raise ValueError(f"{dtype}: pass raw uint8 codes")
        return arr.tobytes()
    if dtype == "BOOL":
        return np.ascontiguousarray(arr.astype(np.uint8)).tobytes()
    return np.ascontiguousarray(arr.astype(np.dtype(_PLAIN[dtype]))).tobytes()


def save(path, tensors, metadata=None, compress=None):
    """Write tensors {name: (dtype, array) | array}; gzip when compress or path ends in .gz."""
    header, chunks, off = {}, [], 0
    for name, v in tensors.items():
        if isinstance(v, tuple):
            dtype, arr = v
        else:
            arr = np.asarray(v)
            dtype = ("BOOL" if arr.dtype == bool else
                     "I64" if np.issubdtype(arr.dtype, np.integer) else "F32")
        if dtype not in _PLAIN:
            raise ValueError(f"{name}: unsupported dtype {dtype}")
        arr = np.asarray(arr)
        data = _encode(dtype, arr)
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    blob = struct.pack("<Q", len(hj)) + hj + b"".join(chunks)
    if compress is None:
        compress = str(path).endswith(".gz")
    if compress:
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(blob)
    else:
        with open(path, "wb") as f:
            f.write(blob)
