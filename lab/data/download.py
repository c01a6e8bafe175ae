"""Fetch the official CIFAR-10 tarball and import it, refusing anything but the exact file.

The md5 check happens before import so a proxy's error page, a truncated transfer or a changed
mirror can never end up cached as "cifar10".
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lab.data.catalog import import_path
from lab.data.cifar import CIFAR10_MD5
from lab.errors import DataError, LabError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_OFFLINE_HINT = "download cifar-10-python.tar.gz elsewhere and run `lab data import FILE`"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _network_error(url: str, e: BaseException) -> LabError:
    if isinstance(e, urllib.error.HTTPError):
        what = f"HTTP {e.code} {e.reason}"
    elif isinstance(e, urllib.error.URLError):
        what = str(e.reason)
    else:
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return LabError(f"cannot download {url}: {what}", hint=_OFFLINE_HINT)


def fetch_cifar10(
    data_dir: Path,
    url: str = CIFAR10_URL,
    progress: Callable[[int, int], None] | None = None,
    expected_md5: str | None = CIFAR10_MD5,
    timeout: float = TIMEOUT_S,
) -> dict:
    """Download, check md5, import as "cifar10"; ``progress(done, total)``, total 0 if unknown."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if os.environ.get("LAB_OFFLINE") and host not in _LOOPBACK:
        # Same switch as the weights download: offline means no attempt, not a long timeout.
        raise LabError(f"LAB_OFFLINE is set: not downloading {url}", hint=_OFFLINE_HINT)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-download-", suffix=".tar.gz", dir=data_dir)
    tmp = Path(tmp_name)
    try:
        md5 = hashlib.md5()
        done = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = int(resp.headers.get("Content-Length") or 0)
                    if progress is not None:
                        progress(0, total)
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        md5.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError) as e:
                raise _network_error(url, e) from e
            except ConnectionError as e:
                raise _network_error(url, e) from e
        if total and done != total:
            raise LabError(
                f"download of {url} stopped at {done} of {total} bytes", hint=_OFFLINE_HINT
            )
        actual = md5.hexdigest()
        if expected_md5 is not None and actual != expected_md5:
            raise DataError(
                f"downloaded file has md5 {actual}, expected {expected_md5}",
                hint="the transfer was corrupted or the server sent another file; retry, or "
                + _OFFLINE_HINT,
            )
        return import_path(tmp, data_dir, name="cifar10", source=url)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
