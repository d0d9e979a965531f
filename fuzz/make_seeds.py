#!/usr/bin/python3
"""Seed inputs for the idx and hdf5 harnesses (scripts/fuzz.sh runs this when
fuzz/corpus/TARGET/ is empty, or with --make-seeds). Small valid files, and a few
that the readers must refuse, so that libFuzzer starts from both sides of each check.
Usage: make_seeds.py idx|hdf5 OUT_DIR. The hdf5 seeds need h5py (Debian's python3-h5py;
run with /usr/bin/python3)."""
import gzip
import os
import struct
import sys


def idx_bytes(shape, payload=None):
    n = 1
    for s in shape:
        n *= s
    if payload is None:
        payload = bytes((7 * i) % 256 for i in range(n))
    return bytes([0, 0, 8, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape) + payload


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def idx_seeds(out):
    write(os.path.join(out, "labels-10.idx1"), idx_bytes([10]))
    write(os.path.join(out, "matrix-2x3.idx2"), idx_bytes([2, 3]))
    images = idx_bytes([3, 4, 4])
    write(os.path.join(out, "images-3x4x4.idx3"), images)
    # mtime=0: the same bytes every time.
    write(os.path.join(out, "images-3x4x4.idx3.gz"), gzip.compress(images, mtime=0))
    write(os.path.join(out, "rank4-1x2x2x2.idx4"), idx_bytes([1, 2, 2, 2]))
    # Refused: one byte short of the header's payload.
    write(os.path.join(out, "truncated-2x3.idx2"), idx_bytes([2, 3])[:-1])


def hdf5_seeds(out):
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)

    # track_times=False: the same bytes every time.
    def splits(path, make, labels, libver="earliest", **dataset_options):
        with h5py.File(path, "w", libver=libver) as f:
            for split, n in (("train", 8), ("validation", 4), ("test", 4)):
                f.create_dataset(split, data=make(n), track_times=False, **dataset_options)
                if labels:
                    f.create_dataset(split + "_labels", data=np.arange(n, dtype=labels) % 3, track_times=False)

    # Binary 4x4 images, uint8 0/255, with int64 labels: also the data the checkpoint and
    # config seeds are trained on (scripts/fuzz.sh).
    splits(os.path.join(out, "binary-4x4.h5"),
           lambda n: (rng.random((n, 4, 4)) < 0.5).astype(np.uint8) * 255, "int64")
    # Flat float32 in [0, 1], chunked and gzip-compressed (libhdf5's filter path), int32 labels.
    splits(os.path.join(out, "float-flat-chunked.h5"), lambda n: rng.random((n, 16), dtype=np.float32),
           "int32", chunks=(4, 16), compression="gzip")
    # float64 grey images, no labels, in the newest file format (other object headers, B-trees).
    splits(os.path.join(out, "double-3x3-latest.h5"), lambda n: rng.random((n, 3, 3)), None, libver="latest")
    # Colour images channels-last, said by a layout attribute on the file (the attribute
    # reader and the NHWC permutation); one split overrides it on the dataset.
    splits(os.path.join(out, "colour-nhwc-4x4x3.h5"),
           lambda n: rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8), "int64")
    with h5py.File(os.path.join(out, "colour-nhwc-4x4x3.h5"), "a") as f:
        f.attrs["layout"] = "NHWC"
        f["test"].attrs["layout"] = "NHWC"
    # Refused: /validation's examples have another shape than /train's, and /test is missing.
    with h5py.File(os.path.join(out, "mismatched.h5"), "w") as f:
        f.create_dataset("train", data=np.zeros((4, 2, 2), dtype=np.uint8), track_times=False)
        f.create_dataset("validation", data=np.zeros((4, 5), dtype=np.uint8), track_times=False)
        f.create_dataset("train_labels", data=np.zeros(3, dtype=np.int64), track_times=False)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("idx", "hdf5"):
        sys.exit(__doc__)
    os.makedirs(sys.argv[2], exist_ok=True)
    {"idx": idx_seeds, "hdf5": hdf5_seeds}[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    main()
