"""MNIST / Fashion-MNIST: IDX parsing, checksums, the cache directory, downloads.

Real data is read from $MINIGAN_DATA_DIR (CI sets it to ../shared/data). Downloads
are tested against a local http.server on 127.0.0.1 serving copies of those files;
no test touches the network (a guard below turns any attempt into a failure).
"""

import gzip
import hashlib
import http.server
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from minigan.data import (
    ChecksumError,
    DataError,
    DataNotFoundError,
    DownloadError,
    IDXFormatError,
    fetch_files,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    resolve_data_dir,
    verify_file,
)
from minigan.data import mnist as M

# From ../shared/data/README.md
LABEL_COUNTS = {
    ("mnist", "train"): [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    ("mnist", "test"): [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    ("fashion-mnist", "train"): [6000] * 10,
    ("fashion-mnist", "test"): [1000] * 10,
}
FIRST_LABELS = {
    ("mnist", "train"): [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
    ("mnist", "test"): [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
}
LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"


# ------------------------------------------------------------------ no network


_LOCAL = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that tries to reach a host other than this machine."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
            raise AssertionError(f"a test tried to reach the network: {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL and host is not None:
            raise AssertionError(f"a test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# ------------------------------------------------------------------ shared data


def _shared_root():
    """The folder $MINIGAN_DATA_DIR names (relative to the cwd), or a skip."""
    value = os.environ.get("MINIGAN_DATA_DIR")
    if not value:
        pytest.skip("MINIGAN_DATA_DIR is not set: point it at the MNIST files "
                    "(CI uses MINIGAN_DATA_DIR=../shared/data from the repository root)")
    root = Path(os.path.abspath(os.path.expanduser(value)))
    wanted = [root / ds / name for ds in M.FILES for name in M.FILES[ds]]
    missing = [str(p) for p in wanted if not p.is_file()]
    if missing:
        pytest.skip(f"MINIGAN_DATA_DIR={value!r} resolves to {root}, which lacks "
                    f"{len(missing)} MNIST/Fashion-MNIST files, e.g. {missing[0]}")
    return root


@pytest.fixture(scope="module")
def shared_root():
    return _shared_root()


@pytest.fixture(scope="module", params=[("mnist", "train"), ("mnist", "test"),
                                        ("fashion-mnist", "train"), ("fashion-mnist", "test")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def loaded(request, shared_root):
    """(dataset, split, images, labels), loaded through $MINIGAN_DATA_DIR only."""
    dataset, split = request.param
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIGAN_DATA_DIR", str(shared_root))
        images, labels = LOADERS[dataset](split, download=False)
    return dataset, split, images, labels


def test_shapes_and_dtypes(loaded):
    dataset, split, images, labels = loaded
    n = 60000 if split == "train" else 10000
    assert images.shape == (n, 784)
    assert images.dtype == np.float32
    assert labels.shape == (n,)
    assert labels.dtype == np.int64
    assert images.flags.writeable and labels.flags.writeable


def test_value_range_is_exactly_minus_one_to_one(loaded):
    _, _, images, _ = loaded
    assert images.min() == -1.0
    assert images.max() == 1.0
    # x / 127.5 - 1 of uint8 pixels: every value is on that grid of 256 levels
    pixels = (images[:2000].astype(np.float64) + 1.0) * 127.5
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-4)
    assert np.mean(images[:2000] == -1.0) > 0.4  # mostly black background


def test_labels_match_readme(loaded):
    dataset, split, _, labels = loaded
    assert labels.min() == 0 and labels.max() == 9
    assert np.bincount(labels, minlength=10).tolist() == LABEL_COUNTS[(dataset, split)]
    if (dataset, split) in FIRST_LABELS:  # the README lists first labels for MNIST only
        assert labels[:10].tolist() == FIRST_LABELS[(dataset, split)]


def test_mnist_and_fashion_differ(shared_root, monkeypatch):
    monkeypatch.setenv("MINIGAN_DATA_DIR", str(shared_root))
    xm, _ = load_mnist("test", download=False)
    xf, _ = load_fashion_mnist("test", download=False)
    assert not np.array_equal(xm[:10], xf[:10])


def test_relative_env_var_is_resolved_against_cwd(shared_root, monkeypatch):
    monkeypatch.chdir(shared_root.parent)
    monkeypatch.setenv("MINIGAN_DATA_DIR", shared_root.name)
    # resolve(): where shared_root is reached through a symbolic link, chdir follows it.
    assert resolve_data_dir().resolve() == shared_root.resolve()
    paths = fetch_files("mnist", [TEST_LABELS], download=False)
    assert paths[TEST_LABELS].resolve() == (shared_root / "mnist" / TEST_LABELS).resolve()
    assert read_idx(paths[TEST_LABELS])[:10].tolist() == FIRST_LABELS[("mnist", "test")]


def test_read_idx_raw_arrays(shared_root):
    images = read_idx(shared_root / "mnist" / TEST_IMAGES)
    labels = read_idx(shared_root / "mnist" / TEST_LABELS)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0


def test_table_matches_shared_sha256sums(shared_root):
    """The module's table agrees with the SHA256SUMS files shipped with the data."""
    for dataset in M.FILES:
        sums = (shared_root / dataset / "SHA256SUMS").read_text().split()
        table = dict(zip(sums[1::2], sums[0::2]))
        assert table == {name: sha for name, (_, sha) in M.FILES[dataset].items()}
        for name, (size, _) in M.FILES[dataset].items():
            assert (shared_root / dataset / name).stat().st_size == size


# ------------------------------------------------------------------------- read_idx


def _write_gz(path, payload: bytes):
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


def _idx(magic: int, dims, data: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in dims) + data


def test_read_idx_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    labels = np.array([0, 9, 3], dtype=np.uint8)
    pi = _write_gz(tmp_path / "i.gz", _idx(2051, images.shape, images.tobytes()))
    pl = _write_gz(tmp_path / "l.gz", _idx(2049, labels.shape, labels.tobytes()))
    np.testing.assert_array_equal(read_idx(pi), images)
    np.testing.assert_array_equal(read_idx(str(pl)), labels)


def test_read_idx_bad_magic(tmp_path):
    p = _write_gz(tmp_path / "x.gz", _idx(2052, [1, 1, 1], b"\x00"))
    with pytest.raises(IDXFormatError, match=r"bad magic number 2052.*expected 2051.*or 2049"):
        read_idx(p)


def test_read_idx_truncated_payload_says_expected_and_got(tmp_path):
    p = _write_gz(tmp_path / "x.gz", _idx(2051, [10, 28, 28], b"\x00" * 100))
    with pytest.raises(IDXFormatError, match=r"truncated.*10x28x28 = 7840 bytes.*got 100"):
        read_idx(p)


def test_read_idx_absurd_header_is_refused_before_allocating(tmp_path):
    p = _write_gz(tmp_path / "x.gz", _idx(2051, [2**31, 2**16, 2**16], b"\x00" * 10))
    with pytest.raises(IDXFormatError, match="corrupt header.*more than a .*-byte gzip file"):
        read_idx(p)


def test_read_idx_truncated_header(tmp_path):
    p = _write_gz(tmp_path / "x.gz", (2049).to_bytes(4, "big") + b"\x00\x01")
    with pytest.raises(IDXFormatError, match=r"truncated inside its header: expected 4 .* got 2"):
        read_idx(p)


def test_read_idx_trailing_bytes(tmp_path):
    p = _write_gz(tmp_path / "x.gz", _idx(2049, [2], b"\x01\x02\x03"))
    with pytest.raises(IDXFormatError, match="1 bytes after the 2 bytes"):
        read_idx(p)


def test_read_idx_not_gzip(tmp_path):
    raw = tmp_path / "raw-idx"
    raw.write_bytes(_idx(2049, [2], b"\x01\x02"))
    with pytest.raises(IDXFormatError, match="not a gzip file.*uncompressed IDX"):
        read_idx(raw)
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"<html>404</html>")
    with pytest.raises(IDXFormatError, match="not a gzip file.*3c 68 74 6d"):
        read_idx(junk)
    empty = tmp_path / "empty.gz"
    empty.write_bytes(b"")
    with pytest.raises(IDXFormatError, match="empty"):
        read_idx(empty)


def test_read_idx_cut_gzip_stream(tmp_path):
    full = gzip.compress(_idx(2049, [5000], bytes(range(10)) * 500))
    p = tmp_path / "cut.gz"
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(IDXFormatError, match="truncated: the gzip stream ends early"):
        read_idx(p)


def test_format_errors_are_value_errors(tmp_path):
    p = _write_gz(tmp_path / "x.gz", _idx(1, [], b""))
    with pytest.raises(ValueError):
        read_idx(p)


# ------------------------------------------------------------- data dir and checks


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINIGAN_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "minigan"
    monkeypatch.setenv("MINIGAN_DATA_DIR", "")  # empty counts as unset
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "minigan"
    monkeypatch.setenv("MINIGAN_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("rel/dir") == tmp_path / "rel" / "dir"
    assert resolve_data_dir().is_absolute()


def test_unknown_split_and_dataset(tmp_path):
    with pytest.raises(ValueError, match="Unknown split 'validation'.*'train' or 'test'"):
        load_mnist("validation", data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match="Unknown dataset 'kmnist'.*mnist, fashion-mnist"):
        fetch_files("kmnist", data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match="Unknown mnist files"):
        fetch_files("mnist", ["nope.gz"], data_dir=tmp_path, download=False)


def test_download_false_never_touches_the_network(tmp_path, server):
    server.serve_good("mnist", [TEST_IMAGES, TEST_LABELS])
    with pytest.raises(DataNotFoundError) as info:
        load_mnist("test", data_dir=tmp_path, download=False, mirrors=[server.base("mnist")])
    assert server.requests == []
    message = str(info.value)
    assert "download=False" in message
    assert str(tmp_path / "mnist") in message
    assert TEST_IMAGES in message and TEST_LABELS in message
    assert server.base("mnist") + TEST_LABELS in message
    assert not (tmp_path / "mnist").exists()


def test_missing_files_error_names_default_mirrors(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist("train", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "fashion-mnist") in message
    for name in ("train-images-idx3-ubyte.gz", TRAIN_LABELS):
        assert M.MIRRORS["fashion-mnist"][0] + name in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DataError)


def _copy_with_flipped_byte(src, dst, at=1000):
    data = bytearray(Path(src).read_bytes())
    data[at] ^= 0xFF
    Path(dst).write_bytes(bytes(data))


def test_corrupt_file_on_disk_is_refused(tmp_path, shared_root):
    folder = tmp_path / "mnist"
    folder.mkdir()
    _copy_with_flipped_byte(shared_root / "mnist" / TEST_LABELS, folder / TEST_LABELS)
    with pytest.raises(ChecksumError) as info:
        fetch_files("mnist", [TEST_LABELS], data_dir=tmp_path, download=False)
    message = str(info.value)
    assert str(folder / TEST_LABELS) in message
    assert "sha256" in message and M.FILES["mnist"][TEST_LABELS][1] in message
    assert "Delete it" in message


def test_wrong_size_file_on_disk_is_refused(tmp_path, shared_root):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / TEST_LABELS).write_bytes((shared_root / "mnist" / TEST_LABELS).read_bytes()[:-10])
    with pytest.raises(ChecksumError, match=r"expected 4542 bytes, got 4532"):
        load_mnist("test", data_dir=tmp_path, download=False)


def test_verification_is_cached_by_path_mtime_and_size(tmp_path, shared_root, monkeypatch):
    monkeypatch.setattr(M, "_verified", {})
    calls = []
    real = M._sha256
    monkeypatch.setattr(M, "_sha256", lambda p: calls.append(p) or real(p))
    folder = tmp_path / "mnist"
    folder.mkdir()
    target = folder / TEST_LABELS
    shutil.copyfile(shared_root / "mnist" / TEST_LABELS, target)
    fetch_files("mnist", [TEST_LABELS], data_dir=tmp_path, download=False)
    fetch_files("mnist", [TEST_LABELS], data_dir=tmp_path, download=False)
    verify_file(target, "mnist")
    assert len(calls) == 1  # hashed once, then remembered
    # Rewritten with the same size but another content and mtime: hashed again, refused.
    st = target.stat()
    _copy_with_flipped_byte(shared_root / "mnist" / TEST_LABELS, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ChecksumError):
        fetch_files("mnist", [TEST_LABELS], data_dir=tmp_path, download=False)
    assert len(calls) == 2


# ------------------------------------------------------------ the local mirror


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        srv.requests.append(self.path)
        route = srv.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        body, mode = route
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut":  # announce the whole file, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        else:
            self.wfile.write(body)

    def log_message(self, *args):  # keep pytest's output clean
        pass


class _Mirror:
    """A threaded http.server on 127.0.0.1 with routes set per test."""

    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.requests = []
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.httpd.requests

    def reset(self):
        self.httpd.routes.clear()
        self.httpd.requests.clear()

    def base(self, dataset, mirror="good"):
        return f"http://127.0.0.1:{self.port}/{mirror}/{dataset}/"

    def serve(self, dataset, name, body, mode="ok", mirror="good"):
        self.httpd.routes[f"/{mirror}/{dataset}/{name}"] = (body, mode)

    def serve_good(self, dataset, names, mirror="good"):
        """Serve the canonical files, copied from $MINIGAN_DATA_DIR (or skip)."""
        root = _shared_root()
        for name in names:
            self.serve(dataset, name, (root / dataset / name).read_bytes(), mirror=mirror)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def _mirror():
    mirror = _Mirror()
    yield mirror
    mirror.close()


@pytest.fixture
def server(_mirror, monkeypatch):
    _mirror.reset()
    # a fresh process-level verification cache, so each test starts cold
    monkeypatch.setattr(M, "_verified", {})
    return _mirror


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_lands_verified(tmp_path, server):
    server.serve_good("mnist", [TEST_IMAGES, TEST_LABELS])
    images, labels = load_mnist("test", data_dir=tmp_path, mirrors=[server.base("mnist")])
    assert images.shape == (10000, 784) and images.dtype == np.float32
    assert labels[:10].tolist() == FIRST_LABELS[("mnist", "test")]
    folder = tmp_path / "mnist"
    assert _leftovers(folder) == sorted([TEST_IMAGES, TEST_LABELS])  # no .part files
    for name in (TEST_IMAGES, TEST_LABELS):
        size, sha = M.FILES["mnist"][name]
        data = (folder / name).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha
    assert sorted(server.requests) == sorted(
        [f"/good/mnist/{TEST_IMAGES}", f"/good/mnist/{TEST_LABELS}"])
    # From now on the cache answers: no more requests, with or without download.
    load_mnist("test", data_dir=tmp_path, mirrors=[server.base("mnist")])
    again, _ = load_mnist("test", data_dir=tmp_path, download=False)
    np.testing.assert_array_equal(again, images)
    assert len(server.requests) == 2


def test_download_goes_to_env_dir_relative_to_cwd(tmp_path, server, monkeypatch):
    server.serve_good("fashion-mnist", [TEST_LABELS])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINIGAN_DATA_DIR", "cache")
    paths = fetch_files("fashion-mnist", TEST_LABELS, mirrors=[server.base("fashion-mnist")])
    target = tmp_path / "cache" / "fashion-mnist" / TEST_LABELS
    assert paths == {TEST_LABELS: target}
    assert np.bincount(read_idx(target)).tolist() == LABEL_COUNTS[("fashion-mnist", "test")]


def test_falls_back_to_the_next_mirror(tmp_path, server):
    server.serve_good("mnist", [TRAIN_LABELS], mirror="second")
    mirrors = [server.base("mnist", "first"), server.base("mnist", "second")]
    paths = fetch_files("mnist", [TRAIN_LABELS], data_dir=tmp_path, mirrors=mirrors)
    assert read_idx(paths[TRAIN_LABELS])[:10].tolist() == FIRST_LABELS[("mnist", "train")]
    assert server.requests == [f"/first/mnist/{TRAIN_LABELS}", f"/second/mnist/{TRAIN_LABELS}"]


def test_corrupted_download_is_not_kept(tmp_path, server, shared_root):
    good = (shared_root / "mnist" / TEST_LABELS).read_bytes()
    bad = bytearray(good)
    bad[2000] ^= 0x01  # same size, one bit off
    server.serve("mnist", TEST_LABELS, bytes(bad))
    with pytest.raises(ChecksumError) as info:
        fetch_files("mnist", [TEST_LABELS], data_dir=tmp_path, mirrors=[server.base("mnist")])
    message = str(info.value)
    assert "sha256 mismatch" in message and M.FILES["mnist"][TEST_LABELS][1] in message
    assert hashlib.sha256(bad).hexdigest() in message
    assert "nothing was kept" in message and TEST_LABELS in message
    assert _leftovers(tmp_path / "mnist") == []


def test_truncated_file_gives_a_clear_error(tmp_path, server, shared_root):
    full = (shared_root / "mnist" / TEST_IMAGES).read_bytes()
    server.serve("mnist", TEST_IMAGES, full[:100_000])  # honest length, short file
    server.serve_good("mnist", [TEST_LABELS])
    with pytest.raises(DownloadError) as info:
        load_mnist("test", data_dir=tmp_path, mirrors=[server.base("mnist")])
    message = str(info.value)
    assert TEST_IMAGES in message
    assert "expected 1648877 bytes, got 100000" in message
    assert "nothing was kept" in message
    assert TEST_IMAGES not in _leftovers(tmp_path / "mnist")
    assert not any(name.endswith(".part") for name in _leftovers(tmp_path / "mnist"))


def test_connection_cut_mid_download_gives_a_clear_error(tmp_path, server, shared_root):
    server.serve("mnist", TRAIN_LABELS, (shared_root / "mnist" / TRAIN_LABELS).read_bytes(),
                 mode="cut")
    with pytest.raises(DownloadError) as info:
        fetch_files("mnist", [TRAIN_LABELS], data_dir=tmp_path, mirrors=[server.base("mnist")])
    message = str(info.value)
    assert "closed after 14440 of the 28881 bytes the server announced" in message
    assert isinstance(info.value, OSError)
    assert _leftovers(tmp_path / "mnist") == []


def test_404_everywhere_gives_the_offline_error(tmp_path, server):
    mirrors = [server.base("mnist", "a"), server.base("mnist", "b")]
    with pytest.raises(DataNotFoundError) as info:
        load_mnist("test", data_dir=tmp_path, mirrors=mirrors)
    message = str(info.value)
    assert "404" in message
    assert str(tmp_path / "mnist") in message
    for name in (TEST_IMAGES, TEST_LABELS):  # both still-missing files are named
        assert name in message
        for base in mirrors:
            assert base + name in message
    assert _leftovers(tmp_path / "mnist") == []


def test_unreachable_mirror_gives_the_offline_error(tmp_path, server):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataNotFoundError, match="no mirror could be reached"):
        fetch_files("mnist", [TEST_LABELS], data_dir=tmp_path,
                    mirrors=[f"http://127.0.0.1:{port}/mnist/"])
    assert _leftovers(tmp_path / "mnist") == []


def test_progress_bar_when_tqdm_is_installed(tmp_path, server, capsys):
    pytest.importorskip("tqdm")
    server.serve_good("mnist", [TEST_LABELS])
    fetch_files("mnist", [TEST_LABELS], data_dir=tmp_path, mirrors=[server.base("mnist")])
    assert TEST_LABELS in capsys.readouterr().err


def test_download_works_without_tqdm(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now fails
    server.serve_good("mnist", [TEST_LABELS])
    paths = fetch_files("mnist", [TEST_LABELS], data_dir=tmp_path,
                        mirrors=[server.base("mnist")])
    assert paths[TEST_LABELS].is_file()
    assert capsys.readouterr().err == ""
