"""Throwaway certificate authorities and server certificates for TLS tests.

fetchd verifies certificates (RFC 8314 section 5, RFC 7817), so its tests need a
CA the client trusts, a server certificate that CA signed for ``localhost`` and
``127.0.0.1``, and a second, unrelated CA whose certificates must be refused.
They are made with the ``openssl`` command line so that fetchd gains no Python
dependency for tests. Keys are EC P-256: quick to generate on a small machine.

Validity starts a day in the past and ends a day after the requested lifetime,
so a test machine whose clock is a little off still accepts the certificates.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TLSFiles", "make_test_ca", "make_unrelated_ca"]

_CONFIG = """\
[ ca ]
default_ca = test_ca

[ test_ca ]
database = {directory}/index.txt
new_certs_dir = {directory}/issued
serial = {directory}/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[ policy_any ]
commonName = supplied

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of one test PKI: the CA certificate and a server certificate + key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_test_ca(
    directory: Path,
    hostname: str = "localhost",
    *,
    ip_addresses: tuple[str, ...] = ("127.0.0.1",),
    ca_name: str = "fetchd test CA",
    days: int = 1,
) -> TLSFiles:
    """Create a CA and a server certificate it signed for ``hostname`` and ``ip_addresses``.

    Files are written into ``directory`` (created if needed): ``ca.pem``,
    ``server.pem`` and ``server.key``. Pass an ``ip_addresses`` of ``()`` and a
    different ``hostname`` to make a certificate that must fail name checks.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is not installed (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "issued").mkdir(exist_ok=True)
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("1000\n")
    san = ", ".join([f"DNS:{hostname}", *(f"IP:{ip}" for ip in ip_addresses)])
    config = directory / "openssl.cnf"
    config.write_text(_CONFIG.format(directory=directory, san=san))

    ca_key, ca_file = directory / "ca.key", directory / "ca.pem"
    key_file, cert_file = directory / "server.key", directory / "server.pem"
    run = _Runner(openssl, config, days)
    run.new_key(ca_key)
    run.sign(ca_key, ca_name, ca_file, extensions="v3_ca", issuer=None)
    run.new_key(key_file)
    run.sign(key_file, hostname, cert_file, extensions="v3_server", issuer=(ca_file, ca_key))
    key_file.chmod(0o600)
    return TLSFiles(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


def make_unrelated_ca(directory: Path, hostname: str = "localhost") -> TLSFiles:
    """Create a second PKI that shares nothing with :func:`make_test_ca`'s.

    A client that trusts only the first CA must refuse a server presenting this
    ``cert_file``, even though its names match.
    """
    return make_test_ca(directory, hostname, ca_name="unrelated test CA")


class _Runner:
    """Runs the openssl subcommands with one config and one validity window."""

    def __init__(self, openssl: str, config: Path, days: int) -> None:
        self._openssl = openssl
        self._config = config
        now = dt.datetime.now(dt.UTC)
        # UTCTime as openssl ca wants it; a day of slack on both ends (see module doc).
        self._start = (now - dt.timedelta(days=1)).strftime("%y%m%d%H%M%SZ")
        self._end = (now + dt.timedelta(days=days + 1)).strftime("%y%m%d%H%M%SZ")

    def new_key(self, path: Path) -> None:
        self._run(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
        )

    def sign(
        self,
        key: Path,
        common_name: str,
        out: Path,
        *,
        extensions: str,
        issuer: tuple[Path, Path] | None,
    ) -> None:
        """Certify ``key`` under ``common_name``; ``issuer=None`` makes it self-signed."""
        csr = out.with_suffix(".csr")
        self._run("req", "-new", "-key", str(key), "-subj", f"/CN={common_name}", "-out", str(csr))
        if issuer is None:
            signer = ["-selfsign", "-keyfile", str(key)]
        else:
            signer = ["-cert", str(issuer[0]), "-keyfile", str(issuer[1])]
        self._run(
            "ca", "-batch", "-notext", "-config", str(self._config), *signer,
            "-in", str(csr), "-out", str(out), "-extensions", extensions,
            "-startdate", self._start, "-enddate", self._end,
        )  # fmt: skip

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [self._openssl, *args],
            capture_output=True,
            text=True,
            check=False,
            env={"OPENSSL_CONF": str(self._config), "PATH": "/usr/bin:/bin"},
        )
        if result.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")
