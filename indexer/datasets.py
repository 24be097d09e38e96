"""The digits datasets that the demo is built from: found beside the checkout, or fetched from their homes.

They are looked for, in order: the folder given (`--datasets`), $DIGITS_DATASETS, `../shared/datasets`
beside the checkout, `data/datasets` inside it. Where none was given and none is found, `datasets_dir(
fetch=True)` fetches them into `data/datasets`: the Free Spoken Digit Dataset at a pinned commit (one
archive of its repository) and the MNIST test set (its two idx files), keeping exactly the files listed in
`digits.sha256` and checking each one against its line there. $DIGITS_MIRROR names a folder or URL that
holds the same three files under `MIRROR_NAMES` instead (an offline copy; the tests' stand-in for the
network). With neither, the error says in one line what to fetch and where to put it.

Attribution: FSDD (CC BY-SA 4.0, github.com/Jakobovski/free-spoken-digit-dataset, Zenodo
10.5281/zenodo.1342401); MNIST (Y. LeCun, C. Cortes, C. J. C. Burges), CC BY-SA 3.0.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from retrieval.errors import NotFoundError

CHECKOUT = Path(__file__).resolve().parents[1]
SHARED = CHECKOUT.parent / "shared" / "datasets"
FETCHED = CHECKOUT / "data" / "datasets"
CHECKSUMS = Path(__file__).with_name("digits.sha256")

FSDD_COMMIT = "26eb9aa"
SOURCES = {
    "fsdd": f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{FSDD_COMMIT}.tar.gz",
    "mnist-images": "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
    "mnist-labels": "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
}
# The names a mirror ($DIGITS_MIRROR) holds the three files under.
MIRROR_NAMES = {
    "fsdd": "free-spoken-digit-dataset.tar.gz",
    "mnist-images": "t10k-images-idx3-ubyte.gz",
    "mnist-labels": "t10k-labels-idx1-ubyte.gz",
}
DIGEST_HEX = 32


class DatasetsMissingError(NotFoundError):
    """The digits datasets are in none of the places looked in and could not be fetched."""


def is_datasets(path: Path) -> bool:
    return (path / "fsdd" / "recordings").is_dir() and (path / "mnist" / "images").is_dir()


def datasets_dir(explicit: str | Path | None = None, fetch: bool = False) -> Path:
    """Where the digits datasets are; with `fetch`, fetched into data/datasets when they are nowhere."""
    given = explicit or os.environ.get("DIGITS_DATASETS")
    if given:
        if not is_datasets(Path(given)):
            raise DatasetsMissingError(f"{given}: expected fsdd/recordings and mnist/images in it ({_WHAT})")
        return Path(given)
    for place in (SHARED, FETCHED):
        if is_datasets(place):
            return place
    if not fetch:
        raise DatasetsMissingError(
            f"the digits datasets are neither at {SHARED} nor at {FETCHED}: `python -m indexer demo` fetches "
            f"them, or set DIGITS_DATASETS ({_WHAT})"
        )
    return fetch_datasets(FETCHED)


_WHAT = "FSDD's recordings/*.wav under fsdd/recordings, MNIST's test images as mnist/images/INDEX_DIGIT.png"


def expected_files() -> dict[str, str]:
    """The files of the datasets, relative to their folder, and the start of each one's digest."""
    lines = CHECKSUMS.read_text(encoding="utf-8").splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line and not line.startswith("#"))}


def fetch_datasets(dest: Path, mirror: str | None = None) -> Path:
    """Fetch the datasets into `dest` (a folder that must not exist yet), checking every file. Written into a
    temporary sibling first and renamed once whole, so a failure or a crash leaves no half-fetched folder."""
    mirror = mirror if mirror is not None else os.environ.get("DIGITS_MIRROR")
    urls = _urls(mirror)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.fetch-", dir=dest.parent))
    try:
        expected = expected_files()
        print(f"fetching the digits datasets into {dest} (once; about 30 MB)", file=sys.stderr)
        _fetch_fsdd(urls["fsdd"], work, expected)
        _fetch_mnist(urls["mnist-images"], urls["mnist-labels"], work, expected)
        missing = sorted(name for name in expected if not (work / name).exists())
        if missing:
            raise DatasetsMissingError(f"{urls['fsdd']}: {len(missing)} expected files are not in it ({missing[0]}, …)")
        shutil.copy(Path(__file__).with_name("digits.sha256"), work / "digits.sha256")
        (work / "ATTRIBUTION.txt").write_text(__doc__.split("Attribution: ")[1], encoding="utf-8")
        os.replace(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _urls(mirror: str | None) -> dict[str, str]:
    if not mirror:
        return dict(SOURCES)
    base = mirror if "://" in mirror else Path(mirror).resolve().as_uri()
    return {key: f"{base.rstrip('/')}/{name}" for key, name in MIRROR_NAMES.items()}


def _download(url: str, into: IO[bytes]) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], file=sys.stderr) as bar:
                while chunk := response.read(1 << 20):
                    into.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DatasetsMissingError(
            f"the digits datasets are not at {SHARED} and fetching {url} failed ({reason}): fetch {SOURCES['fsdd']} "
            f"and {SOURCES['mnist-images']} (+ labels), or copy the datasets to {FETCHED} or set DIGITS_DATASETS "
            f"({_WHAT})"
        ) from exc
    into.seek(0)


def _check(name: str, data: bytes, expected: dict[str, str], source: str) -> None:
    if hashlib.sha256(data).hexdigest()[:DIGEST_HEX] != expected[name]:
        raise DatasetsMissingError(f"{source}: {name} differs from the copy the demo was built with (checksum)")


def _fetch_fsdd(url: str, work: Path, expected: dict[str, str]) -> None:
    """The recordings listed in the checksums, read from the repository's archive member by member (never
    extracted as named in the archive: only the listed names are written)."""
    wanted = {name.rsplit("/", 1)[1]: name for name in expected if name.startswith("fsdd/")}
    (work / "fsdd" / "recordings").mkdir(parents=True)
    with tempfile.TemporaryFile() as archive:
        _download(url, archive)
        try:
            with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                for member in tar:
                    parent, _, base = member.name.rpartition("/")
                    if not (member.isfile() and parent.endswith("recordings") and base in wanted):
                        continue
                    handle = tar.extractfile(member)
                    data = handle.read() if handle else b""
                    _check(wanted[base], data, expected, url)
                    (work / wanted[base]).write_bytes(data)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DatasetsMissingError(f"{url}: not a readable .tar.gz archive ({exc})") from exc


def _fetch_mnist(images_url: str, labels_url: str, work: Path, expected: dict[str, str]) -> None:
    from PIL import Image

    images, labels = _idx(images_url, 2051), _idx(labels_url, 2049)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(labels) != len(images):
        raise DatasetsMissingError(f"{images_url}: {images.shape} images for {labels.shape} labels, not 28x28 each")
    folder = work / "mnist" / "images"
    folder.mkdir(parents=True)
    for name in (n for n in expected if n.startswith("mnist/")):
        index, digit = (int(part) for part in Path(name).stem.split("_"))
        if index >= len(images) or labels[index] != digit:
            raise DatasetsMissingError(f"{labels_url}: image {index} is not labelled {digit}")
        pixels = np.ascontiguousarray(images[index])
        _check(name, pixels.tobytes(), expected, images_url)
        Image.fromarray(pixels).save(work / name)


def _idx(url: str, magic: int) -> np.ndarray:
    """An idx file (MNIST's format): a big-endian magic number, the dimensions, then unsigned bytes."""
    with tempfile.TemporaryFile() as compressed:
        _download(url, compressed)
        try:
            data = gzip.GzipFile(fileobj=compressed).read()
        except (OSError, EOFError) as exc:
            raise DatasetsMissingError(f"{url}: not a readable .gz file ({exc})") from exc
    found, ndim = int.from_bytes(data[:4], "big"), data[3] if len(data) > 3 else 0
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim) if len(data) >= 4 + 4 * ndim else np.zeros(0, np.uint8)
    if found != magic or body.size != int(np.prod(shape)):
        raise DatasetsMissingError(f"{url}: not an idx file of magic {magic} (found {found}, {body.size} bytes)")
    return body.reshape(shape)
