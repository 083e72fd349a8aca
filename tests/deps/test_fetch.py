"""``mlaudit db fetch`` against a real HTTP server on 127.0.0.1 serving a fixture export."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import Runner
from tests.deps.conftest import example_records, write_zip


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server for ``tmp_path/www``; yields its base URL, stops after."""
    root = tmp_path / "www"
    (root / "PyPI").mkdir(parents=True)
    write_zip(root / "PyPI" / "all.zip", example_records())
    (root / "PyPI" / "broken.zip").write_bytes(b"PK\x03\x04 this is not a whole zip")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *_: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/PyPI"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_fetch_downloads_checks_and_indexes(run_cli: Runner, served: str, tmp_path: Path) -> None:
    dest = tmp_path / "db"
    result = run_cli("db", "fetch", "--dest", dest, "--url", f"{served}/all.zip")
    assert result.exit_code == 0, result.stderr
    target = dest / "PyPI-all.zip"
    assert result.stdout.strip() == str(target)
    assert "5 records (0 withdrawn)" in result.stderr
    assert [p.name for p in dest.iterdir()] == ["PyPI-all.zip"]  # no temporary file left


def test_a_missing_or_corrupt_download_is_exit_2_and_keeps_the_old_copy(
    run_cli: Runner, served: str, tmp_path: Path
) -> None:
    dest = tmp_path / "db"
    assert run_cli("db", "fetch", "--dest", dest, "--url", f"{served}/all.zip").exit_code == 0
    before = (dest / "PyPI-all.zip").read_bytes()
    missing = run_cli("db", "fetch", "--dest", dest, "--url", f"{served}/nothing.zip")
    assert missing.exit_code == 2
    assert "cannot fetch" in missing.stderr
    assert "Traceback" not in missing.stderr
    broken = run_cli("db", "fetch", "--dest", dest, "--url", f"{served}/broken.zip")
    assert broken.exit_code == 2
    assert "did not serve an OSV export" in broken.stderr
    assert (dest / "PyPI-all.zip").read_bytes() == before
    assert [p.name for p in dest.iterdir()] == ["PyPI-all.zip"]


def test_only_http_urls_are_fetched(run_cli: Runner, tmp_path: Path) -> None:
    result = run_cli("db", "fetch", "--dest", tmp_path, "--url", "file:///etc/passwd")
    assert result.exit_code == 2
    assert "only http and https" in result.stderr
