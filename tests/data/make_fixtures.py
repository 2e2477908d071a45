#!/usr/bin/python3
"""make_fixtures.py: writes the small .npy/.npz files tests/c/test_io.c and tests/lua/io_spec.lua
read, with numpy itself, so the load path is checked against the real writer.
Run from anywhere: /usr/bin/python3 tests/data/make_fixtures.py (needs Debian's python3-numpy).
The values are formulas the tests recompute; change both together."""
import io
import os
import warnings
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(HERE, name)


def arrays():
    return {
        "a": (np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1.0),  # float32 2x3
        "d": np.array([1.5, -2.25, 3e10, 0.1], dtype=np.float64),       # converted to float32
        "i": np.array([-3, 0, 2 ** 40, 7], dtype=np.int64),
        "i4": np.array([-5, 6, 2 ** 31 - 1], dtype=np.int32),           # widened to int64
        "u": np.array([0, 7, 255], dtype=np.uint8),
        "b": np.array([True, False, True, True]),
        "f": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        "f3": np.asfortranarray(np.arange(24, dtype=np.int64).reshape(2, 3, 4)),
        "s": np.array(3.25, dtype=np.float64),                          # 0-d
        "e": np.zeros((0, 3), dtype=np.float32),                        # empty
    }


def npy_bytes(arr, version=None, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=allow_pickle)
    return buf.getvalue()


def main():
    a = arrays()
    assert a["f"].flags.f_contiguous and not a["f"].flags.c_contiguous
    np.savez(path("basic.npz"), **a)
    np.savez_compressed(path("compressed.npz"), a=a["a"], f=a["f"], i=a["i"], b=a["b"])
    np.save(path("a.npy"), a["a"])
    # Header version 2.0 (numpy only picks it for huge headers, so ask for it).
    with zipfile.ZipFile(path("v2.npz"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("v2.npy", npy_bytes(np.arange(5, dtype=np.float32) * 2, version=(2, 0)))
    with zipfile.ZipFile(path("bigendian.npz"), "w") as z:
        z.writestr("x.npy", npy_bytes(np.arange(3, dtype=">f4")))
    with zipfile.ZipFile(path("object.npz"), "w") as z:
        z.writestr("o.npy", npy_bytes(np.array([{"k": 1}, None], dtype=object), allow_pickle=True))
    # Two members with one name: zipfile warns but writes it; readers must refuse it.
    with warnings.catch_warnings(), zipfile.ZipFile(path("duplicate.npz"), "w") as z:
        warnings.simplefilter("ignore")
        z.writestr("x.npy", npy_bytes(np.arange(3)))
        z.writestr("x.npy", npy_bytes(np.arange(3)))
    for name in ("basic.npz", "compressed.npz", "a.npy", "v2.npz", "bigendian.npz", "object.npz",
                 "duplicate.npz"):
        size = os.path.getsize(path(name))
        assert size < 10 * 1024, (name, size)
        print(f"{name}: {size} bytes")


if __name__ == "__main__":
    main()
