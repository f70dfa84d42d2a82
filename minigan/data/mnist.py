"""MNIST and Fashion-MNIST: the original gzip IDX files, verified, cached, loaded.

    images, labels = load_mnist("train")   # (60000, 784) float32 in [-1, 1], (60000,) int64

Where the files live: ``<data_dir>/mnist/<file>.gz`` and
``<data_dir>/fashion-mnist/<file>.gz``, where ``data_dir`` is the argument, else the
environment variable ``MINIGAN_DATA_DIR`` (a relative path is taken from the current
directory), else ``~/.cache/minigan``. Missing files are downloaded from the
canonical mirrors, into a temporary file in the same folder that is renamed into
place only after its sha256 matched; a broken or partial download is never kept.
Files already on disk are checked against the same sha256 once per process.

Offline, put the four ``.gz`` files of a set in that folder by hand; the error
message says which files, where, and from which URLs.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "FILES",
    "MIRRORS",
    "SPLITS",
    "FASHION_MNIST_CLASSES",
    "DataError",
    "DataNotFoundError",
    "ChecksumError",
    "DownloadError",
    "IDXFormatError",
    "read_idx",
    "resolve_data_dir",
    "verify_file",
    "fetch_files",
    "load_mnist",
    "load_fashion_mnist",
]

ENV_VAR = "MINIGAN_DATA_DIR"
DEFAULT_DATA_DIR = Path("~") / ".cache" / "minigan"

# The canonical files: name -> (size in bytes, sha256). These are the hashes of the
# original downloads, the same files torchvision, Keras and TFDS use.
FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": (
            28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": (
            1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": (
            4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz": (
            29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz": (
            4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz": (
            5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
}

# Base URLs, tried in order; a file's URL is base + file name.
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the one torchvision uses
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's own
    ),
}

# split -> (images file, labels file)
SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_IDX_MAGIC = {2049: ("labels", 1), 2051: ("images", 3)}  # magic -> (kind, ndim)
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 16
_TIMEOUT_S = 30  # per read: a silent server is given up after this
# The whole download of one file must end by this deadline: a per-read timeout
# alone lets a server that trickles a byte every few seconds hold a run for days.
# A base for connecting plus the file at a slow _MIN_RATE (20 KB/s: 21 minutes
# for MNIST's largest file, 26 MB).
_DEADLINE_BASE_S = 60
_MIN_RATE = 20_000  # bytes per second
# .NAME.PID.XXXXXXXX.part: a download in progress (see _download_to)
_PARTIAL = re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+\.part$")

# Files whose sha256 matched in this process: resolved path -> (mtime_ns, size).
# A file rewritten since (new mtime or size) is hashed again.
_verified: dict[str, tuple[int, int]] = {}


class DataError(Exception):
    """Base class of minigan's data-loading errors."""


class DataNotFoundError(DataError, FileNotFoundError):
    """Data files are missing and could not be downloaded (offline, or download=False)."""


class ChecksumError(DataError, ValueError):
    """A file's sha256 (or size) is not the canonical one."""


class DownloadError(DataError, OSError):
    """A download started but did not deliver the whole file."""


class IDXFormatError(DataError, ValueError):
    """A file is not a well-formed gzip IDX file."""


# --------------------------------------------------------------------- IDX parsing


def read_idx(path) -> np.ndarray:
    """Parse a gzip IDX file: images -> (N, rows, cols) uint8, labels -> (N,) uint8.

    Accepts the two MNIST kinds, magic 2051 (images, 3 dims) and 2049 (labels,
    1 dim), with the big-endian header of the format. Raises IDXFormatError for a
    file that is not gzip, a bad magic number, or a file shorter or longer than its
    header says.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        head = raw.read(4)
    if head[:2] != _GZIP_MAGIC:
        if not head:
            why = "it is empty (0 bytes)"
        elif head[:3] == b"\x00\x00\x08":
            why = "it looks like an uncompressed IDX file; gzip it (`gzip FILE`) or use the .gz download"
        else:
            why = f"it starts with bytes {head.hex(' ')}, not the gzip signature 1f 8b"
        raise IDXFormatError(f"{path} is not a gzip file: {why}.")

    try:
        with gzip.open(path, "rb") as f:
            header = _read_exact(f, 4)
            if len(header) < 4:
                raise IDXFormatError(
                    f"{path} is truncated: expected a 4-byte IDX magic number, got "
                    f"{len(header)} bytes."
                )
            magic = int.from_bytes(header, "big")
            if magic not in _IDX_MAGIC:
                raise IDXFormatError(
                    f"{path} has bad magic number {magic} (0x{magic:08x}): expected 2051 "
                    "(IDX images, uint8, 3 dims) or 2049 (IDX labels, uint8, 1 dim)."
                )
            kind, ndim = _IDX_MAGIC[magic]
            dims_raw = _read_exact(f, 4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise IDXFormatError(
                    f"{path} is truncated inside its header: expected {4 * ndim} bytes of "
                    f"dimensions for {kind}, got {len(dims_raw)}."
                )
            shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
            expected = math.prod(shape)  # Python ints: no overflow on a corrupt header
            # Deflate expands at most ~1032:1, so a corrupt header cannot make us
            # allocate more than the file could possibly hold.
            limit = 1032 * path.stat().st_size + 1024
            if expected > limit:
                raise IDXFormatError(
                    f"{path} has a corrupt header: it announces {kind} of shape {shape} "
                    f"({expected} bytes), more than a {path.stat().st_size}-byte gzip file "
                    "can hold."
                )
            data = np.empty(shape, dtype=np.uint8)
            got = _readinto_exact(f, memoryview(data.reshape(-1)))
            if got < expected:
                raise IDXFormatError(
                    f"{path} is truncated: its header says {kind} of shape "
                    f"{'x'.join(map(str, shape))} = {expected} bytes of data, got {got}."
                )
            extra = len(f.read(_CHUNK))
            if extra:
                raise IDXFormatError(
                    f"{path} has {'at least ' if extra == _CHUNK else ''}{extra} bytes after "
                    f"the {expected} bytes its header announces ({kind} of shape {shape}): "
                    "it is not a single IDX file."
                )
    except EOFError as err:  # gzip stream cut short: a partial download or copy
        raise IDXFormatError(
            f"{path} is truncated: the gzip stream ends early ({err}). Delete it and "
            "download it again."
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise IDXFormatError(f"{path} is a corrupt gzip file ({err}).") from None
    return data


def _read_exact(f, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _readinto_exact(f, view: memoryview) -> int:
    # GzipFile.readinto may fill less than asked; loop until full or end of stream.
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


# ------------------------------------------------------------- paths and checksums


def resolve_data_dir(data_dir=None) -> Path:
    """The cache root: ``data_dir``, else $MINIGAN_DATA_DIR, else ~/.cache/minigan.

    Returned absolute; a relative path is taken from the current directory.
    """
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return Path(os.path.abspath(os.path.expanduser(os.fspath(data_dir))))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_dataset(dataset: str) -> str:
    if dataset not in FILES:
        raise ValueError(f"Unknown dataset {dataset!r}: expected one of {', '.join(FILES)}.")
    return dataset


def verify_file(path, dataset: str, filename: str | None = None) -> Path:
    """Check a file on disk against the canonical size and sha256 of ``dataset``.

    ``filename`` (default: the file's own name) picks the row of ``FILES``. The
    result is remembered per path, mtime and size, so a file is hashed once per
    process. Raises ChecksumError naming the file and what to do.
    """
    path = Path(path)
    filename = path.name if filename is None else filename
    files = FILES[_check_dataset(dataset)]
    if filename not in files:
        raise ValueError(
            f"{filename!r} is not a file of {dataset}: expected one of {', '.join(files)}."
        )
    size, sha = files[filename]
    st = path.stat()
    key = os.path.realpath(path)
    if _verified.get(key) == (st.st_mtime_ns, st.st_size):
        return path
    fix = (
        f"It is corrupt, incomplete or not the canonical file. Delete it and load again "
        f"to download it afresh, or replace it with a copy from "
        f"{' or '.join(b + filename for b in MIRRORS[dataset])}."
    )
    if st.st_size != size:
        raise ChecksumError(
            f"{path} has the wrong size for {dataset}'s {filename}: expected {size} bytes, "
            f"got {st.st_size}. {fix}"
        )
    actual = _sha256(path)
    if actual != sha:
        raise ChecksumError(
            f"{path} fails its sha256 check for {dataset}'s {filename}: expected {sha}, "
            f"got {actual}. {fix}"
        )
    _verified[key] = (st.st_mtime_ns, st.st_size)
    return path


# ------------------------------------------------------------------------ download


def _manual_help(dataset: str, folder: Path, missing, mirrors) -> str:
    lines = [f"Put these files of {dataset} in {folder}/ (download each from one of the URLs):"]
    for name in missing:
        size, _ = FILES[dataset][name]
        urls = "  or  ".join(_url(b, name) for b in mirrors)
        lines.append(f"  {name} ({size} bytes): {urls}")
    lines.append(
        f"or point ${ENV_VAR} (or data_dir=) at a folder that has {dataset}/ with them "
        f"(the default is {DEFAULT_DATA_DIR}/)."
    )
    return "\n".join(lines)


def _url(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


class _Unreachable(Exception):
    """Internal: a mirror could not be reached or refused the file (offline, 404, ...)."""


class _BadContent(Exception):
    """Internal: a mirror answered but the bytes were wrong (kind: 'checksum' or 'short')."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        # Plain tqdm, not tqdm.auto: the notebook flavour fails without ipywidgets.
        from tqdm import tqdm
    except ImportError:  # a broken install: no bar then, the download still works
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                leave=False, file=sys.stderr)


def _download_to(url: str, dest: Path, size: int, sha: str, progress: bool) -> None:
    """Fetch ``url`` into ``dest`` atomically: a temp file in dest's folder, verified,
    then os.replace'd. Raises _Unreachable when the mirror cannot be reached and
    _BadContent when it answered with the wrong bytes; leaves nothing behind on failure.
    """
    import http.client  # imported here: `import minigan` stays light
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "minigan (python urllib)"})
    deadline_s = _DEADLINE_BASE_S + size / _MIN_RATE
    deadline = time.monotonic() + deadline_s
    # our pid in the name: a later run removes the file if this one was killed
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".part",
                               dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
            except (OSError, http.client.HTTPException) as err:  # refused, DNS, 404, timeout
                raise _Unreachable(f"{type(err).__name__}: {err}") from None
            with resp:
                announced = resp.headers.get("Content-Length")
                h = hashlib.sha256()
                got = 0
                bar = _progress_bar(size, dest.name, progress)
                try:
                    while True:
                        if time.monotonic() > deadline:
                            raise _BadContent(
                                "short", f"too slow: {got} of {size} bytes after the "
                                f"{deadline_s:.0f} s allowed for this file")
                        try:
                            # read1: what has arrived, at most _CHUNK, so the deadline is
                            # checked at least every _TIMEOUT_S however slowly bytes come
                            chunk = resp.read1(_CHUNK)
                        except (OSError, http.client.HTTPException) as err:
                            # reset, timeout or IncompleteRead once bytes were flowing
                            raise _BadContent(
                                "short", f"the transfer broke off after {got} bytes "
                                f"({type(err).__name__}: {err})"
                            ) from None
                        if not chunk:
                            break
                        if got + len(chunk) > size:  # endless or wrong: stop, not fill the disk
                            raise _BadContent(
                                "short", f"wrong file: the server sent more than the "
                                f"expected {size} bytes")
                        out.write(chunk)  # a local write error (disk full) propagates as is
                        h.update(chunk)
                        got += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                finally:
                    if bar is not None:
                        bar.close()
            out.flush()
            os.fsync(out.fileno())
        if announced is not None and announced.isdigit() and got < int(announced):
            raise _BadContent(
                "short", f"the connection closed after {got} of the {announced} bytes "
                "the server announced"
            )
        if got != size:
            raise _BadContent(
                "short", f"truncated or wrong file: expected {size} bytes, got {got}"
            )
        actual = h.hexdigest()
        if actual != sha:
            raise _BadContent("checksum", f"sha256 mismatch: expected {sha}, got {actual}")
        os.replace(tmp, dest)
        tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def fetch_files(dataset: str, filenames=None, data_dir=None, download: bool = True,
                mirrors=None, progress: bool = True) -> dict:
    """Make sure files of ``dataset`` are on disk and verified; return name -> Path.

    dataset: 'mnist' or 'fashion-mnist'; filenames: names from ``FILES[dataset]``
    (default: all four). Missing files are downloaded from ``mirrors`` (base URLs,
    default ``MIRRORS[dataset]``) unless ``download=False``, which never touches the
    network. Raises DataNotFoundError (missing and not downloadable), ChecksumError
    (a file on disk or a download has the wrong sha256), DownloadError (a download
    broke off or was truncated).
    """
    files = FILES[_check_dataset(dataset)]
    if filenames is None:
        filenames = list(files)
    elif isinstance(filenames, str):
        filenames = [filenames]
    unknown = [f for f in filenames if f not in files]
    if unknown:
        raise ValueError(f"Unknown {dataset} files {unknown}: expected names from {list(files)}.")
    if mirrors is None:
        mirrors = MIRRORS[dataset]
    elif isinstance(mirrors, str):
        mirrors = [mirrors]
    mirrors = list(mirrors)

    folder = resolve_data_dir(data_dir) / dataset
    paths = {name: folder / name for name in filenames}
    from minigan._atomic import remove_stale_temporaries

    # .part files of downloads whose process was killed (kill -9, power loss)
    remove_stale_temporaries(folder, _PARTIAL)
    missing = [name for name, p in paths.items() if not p.is_file()]
    # Files already there are checked first, so a bad one fails fast, before any download.
    for name in filenames:
        if name not in missing:
            verify_file(paths[name], dataset, name)

    if missing:
        _check_can_download(dataset, folder, missing, mirrors, download)
    for i, name in enumerate(missing):
        failures = _download_from_mirrors(paths[name], name, files[name], mirrors, progress)
        if failures:
            _raise_download_failure(dataset, folder, name, missing[i:], mirrors, failures)
    return paths


def _check_can_download(dataset, folder, missing, mirrors, download):
    """Raise DataNotFoundError, saying how to get the files by hand, when the
    missing files cannot be downloaded: not allowed, no mirrors, or a folder that
    cannot be written (found by writing a probe file)."""
    if not download:
        raise DataNotFoundError(
            f"{dataset} files not found in {folder}/: {', '.join(missing)} "
            f"(download=False, so nothing was fetched).\n"
            + _manual_help(dataset, folder, missing, mirrors or MIRRORS[dataset])
        )
    if not mirrors:
        raise DataNotFoundError(
            f"{dataset} files not found in {folder}/: {', '.join(missing)}, and no mirrors "
            "were given to download them from.\n"
            + _manual_help(dataset, folder, missing, MIRRORS[dataset])
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe_fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(probe_fd)
        os.unlink(probe)
    except OSError as err:
        raise DataNotFoundError(
            f"{dataset} files are missing from {folder}/ ({', '.join(missing)}) and "
            f"cannot be downloaded there: the folder is not writable "
            f"({type(err).__name__}: {err}). Set ${ENV_VAR} or data_dir= to a writable "
            "folder.\n" + _manual_help(dataset, folder, missing, mirrors)
        ) from None


def _download_from_mirrors(path, name, size_sha, mirrors, progress):
    """Download one file from the first mirror that serves it intact. Returns []
    on success, else every mirror's failure as (kind, url, message)."""
    size, sha = size_sha
    failures = []
    for base in mirrors:
        url = _url(base, name)
        try:
            _download_to(url, path, size, sha, progress)
        except _BadContent as err:
            failures.append((err.kind, url, str(err)))
        except _Unreachable as err:
            failures.append(("unreachable", url, str(err)))
        else:
            st = path.stat()
            _verified[os.path.realpath(path)] = (st.st_mtime_ns, st.st_size)
            return []
    return failures


def _raise_download_failure(dataset, folder, name, still_missing, mirrors, failures):
    tried = "\n".join(f"  {url}: {msg}" for _, url, msg in failures)
    help_ = _manual_help(dataset, folder, still_missing, mirrors)
    kinds = {kind for kind, _, _ in failures}
    if "checksum" in kinds:
        raise ChecksumError(
            f"Downloaded {dataset}'s {name} but it failed verification, so nothing was "
            f"kept in {folder}/. Tried:\n{tried}\n"
            "A mirror serving a different file is a problem of that mirror; try again "
            "later or fetch the file by hand.\n" + help_
        )
    if "short" in kinds:
        raise DownloadError(
            f"The download of {dataset}'s {name} did not complete, so nothing was kept "
            f"in {folder}/. Tried:\n{tried}\nTry again, or fetch the file by hand.\n" + help_
        )
    raise DataNotFoundError(
        f"Could not download {dataset}'s {name}: no mirror could be reached (offline?). "
        f"Tried:\n{tried}\n" + help_
    )


# ------------------------------------------------------------------------- loaders


def _load(dataset: str, split: str, data_dir, download: bool, mirrors):
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: expected 'train' or 'test'.")
    images_name, labels_name = SPLITS[split]
    paths = fetch_files(dataset, [images_name, labels_name], data_dir=data_dir,
                        download=download, mirrors=mirrors)
    images = read_idx(paths[images_name])
    labels = read_idx(paths[labels_name])
    # The sha256 already pins the content; these checks guard against a caller
    # handing other files through a patched table.
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise IDXFormatError(
            f"{paths[images_name]} and {paths[labels_name]} do not match: expected images "
            f"(N, 28, 28) and labels (N,), got {images.shape} and {labels.shape}."
        )
    n = images.shape[0]
    x = images.reshape(n, -1).astype(np.float32)
    del images
    # In place, to keep the peak memory at one float32 copy: [0, 255] -> [-1, 1].
    x /= np.float32(127.5)
    x -= np.float32(1.0)
    return x, labels.astype(np.int64)


def load_mnist(split: str = "train", data_dir=None, download: bool = True, mirrors=None):
    """MNIST digits: ``(images, labels)``.

    images: (N, 784) float32, pixels scaled to [-1, 1] as x / 127.5 - 1 (the range
    of a tanh generator); labels: (N,) int64 in 0..9. N = 60000 for 'train', 10000
    for 'test'. Files are read from (or downloaded to) ``<data_dir>/mnist/``; see
    the module docstring for ``data_dir``, ``download`` and ``mirrors``.
    """
    return _load("mnist", split, data_dir, download, mirrors)


def load_fashion_mnist(split: str = "train", data_dir=None, download: bool = True,
                       mirrors=None):
    """Fashion-MNIST: ``(images, labels)``, same shapes and scaling as ``load_mnist``.

    Class names are in ``FASHION_MNIST_CLASSES``. Files live in
    ``<data_dir>/fashion-mnist/``.
    """
    return _load("fashion-mnist", split, data_dir, download, mirrors)
