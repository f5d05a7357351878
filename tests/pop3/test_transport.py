"""The TLS context: verifying, shared between logins, rebuilt when the CA file changes."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from fetchd.errors import TLSError
from fetchd.pop3.transport import tls_context
from fetchd.testing.tlsfiles import make_test_ca, make_unrelated_ca


def test_context_verifies_and_is_shared(tmp_path: Path) -> None:
    files = make_test_ca(tmp_path)
    context = tls_context(files.ca_file)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert tls_context(files.ca_file) is context


def test_a_changed_ca_file_gives_a_new_context(tmp_path: Path) -> None:
    files = make_test_ca(tmp_path / "a")
    first = tls_context(files.ca_file)
    other = make_unrelated_ca(tmp_path / "b")
    files.ca_file.write_bytes(other.ca_file.read_bytes())
    stat = files.ca_file.stat()
    os.utime(files.ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert tls_context(files.ca_file) is not first


def test_missing_ca_file_is_a_tls_error(tmp_path: Path) -> None:
    with pytest.raises(TLSError, match="cannot load the CA file"):
        tls_context(tmp_path / "nope.pem")
