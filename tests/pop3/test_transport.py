"""The transport: the TLS context (verifying, shared, rebuilt when the CA file changes) and
connecting within the connect timeout, name resolution included."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from fetchd.errors import NetworkError, NetworkTimeout, TLSError
from fetchd.pop3 import transport
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


def test_a_resolver_that_does_not_answer_is_bounded_by_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released = threading.Event()

    def hangs(*args: object, **kwargs: object) -> list[object]:
        released.wait(30)  # as a DNS server that never answers
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hangs)
    started = time.monotonic()
    with pytest.raises(NetworkTimeout, match=r"resolving pop\.example\.org took longer"):
        transport._connect("pop.example.org", 995, 0.3)
    assert time.monotonic() - started < 2
    released.set()


def test_a_name_that_does_not_resolve_is_a_network_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with pytest.raises(NetworkError, match=r"cannot resolve nowhere\.invalid: Name or service"):
        transport._connect("nowhere.invalid", 995, 5)


def test_connects_to_a_listening_loopback_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = transport._connect("localhost", server.getsockname()[1], 5)
        sock.close()
