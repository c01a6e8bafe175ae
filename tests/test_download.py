"""fetch_cifar10 against a real HTTP server on 127.0.0.1 serving a generated tarball."""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from lab.data import fetch_cifar10, import_data, load_dataset
from lab.errors import DataError, LabError
from tests import fakes


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, fakes.FakeSet]]:
    root = tmp_path / "www"
    fake = fakes.write_cifar_tarball(root / "cifar-10-python.tar.gz")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz", fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download_checks_md5_imports_and_reports_progress(
    tmp_path: Path, served: tuple[str, fakes.FakeSet]
) -> None:
    url, fake = served
    assert fake.path is not None
    md5 = hashlib.md5(fake.path.read_bytes()).hexdigest()
    seen: list[tuple[int, int]] = []
    data_dir = tmp_path / "data"

    manifest = fetch_cifar10(
        data_dir, url=url, progress=lambda d, t: seen.append((d, t)), expected_md5=md5
    )

    size = fake.path.stat().st_size
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert manifest["name"] == "cifar10" and manifest["source"] == url
    assert manifest["official"] is False  # a fake, whatever md5 the test expected
    ds = load_dataset("cifar10", data_dir)
    np.testing.assert_array_equal(ds.train_x, fake.train_x)
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar10"]


def test_wrong_md5_fails_cleanly_and_keeps_the_cache(
    tmp_path: Path, served: tuple[str, fakes.FakeSet]
) -> None:
    url, _ = served
    data_dir = tmp_path / "data"
    older = fakes.write_cifar_tarball(tmp_path / "older.tar.gz", fakes.cifar_arrays(seed=9))
    import_data(older.path, data_dir)
    before = (data_dir / "cifar10" / "data.npz").read_bytes()

    with pytest.raises(DataError, match="md5"):
        fetch_cifar10(data_dir, url=url)  # the real md5 can never match the fake

    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar10"]
    assert (data_dir / "cifar10" / "data.npz").read_bytes() == before


def test_http_error_names_the_offline_route(
    tmp_path: Path, served: tuple[str, fakes.FakeSet]
) -> None:
    url, _ = served
    with pytest.raises(LabError, match="HTTP 404") as err:
        fetch_cifar10(tmp_path / "data", url=url.replace("cifar-10", "missing"))
    assert "lab data import FILE" in str(err.value)
    assert list((tmp_path / "data").iterdir()) == []


def test_unreachable_server_names_the_offline_route(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LabError) as err:
        fetch_cifar10(tmp_path / "data", url=f"http://127.0.0.1:{port}/x.tar.gz", timeout=5)
    assert not isinstance(err.value, DataError)
    assert "lab data import FILE" in (err.value.hint or "")
    assert list((tmp_path / "data").iterdir()) == []


def test_lab_offline_refuses_remote_urls_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_OFFLINE", "1")
    with pytest.raises(LabError, match="LAB_OFFLINE") as err:
        fetch_cifar10(tmp_path / "data")
    assert "lab data import FILE" in str(err.value)
    assert not (tmp_path / "data").exists()
