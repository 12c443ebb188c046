"""Certificates for the TLS tests, made at test time with the `openssl` command (never stored in
the repository): a test CA, the SRS's good certificate, one for another host, an expired one, one
from a CA nobody trusts, a client certificate for mutual TLS, the edge listener's certificate,
and broken files for the start-up checks.

Every key is an EC P-256 key (fast to make). Server certificates name the SRS the way the proxy
must check it: an IP address SAN for 127.0.0.1 (RFC 6125 has no CN fallback for IP addresses),
plus DNS SANs `localhost` and `srs.test` (the name a configured `server_name` uses). Generation
runs once per pytest session (a fixture in conftest.py) in about a second.

    pki = TestPki(directory).generate()
    pki.srs.cert, pki.srs.key, pki.ca_file, pki.ca_dir, pki.expired.cert, ...
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import HarnessError

OPENSSL_TIMEOUT_S = 30

CA_SUBJECT = "/O=SIPREC Edge tests/CN=SIPREC Edge Test CA"
ROGUE_CA_SUBJECT = "/O=Nobody trusts this/CN=Rogue Test CA"
CLIENT_CN = "siprec-edge-client"
SERVER_NAME = "srs.test"  # a DNS SAN of the good SRS certificate, for server_name/SNI

# Validity of the expired certificate (openssl ca -startdate/-enddate, YYMMDDHHMMSSZ).
EXPIRED_NOT_BEFORE = "200101000000Z"
EXPIRED_NOT_AFTER = "200102000000Z"


@dataclass
class Identity:
    """A certificate, its key, and its chain: the certificate followed by its issuer's (what a
    server may send)."""

    name: str
    cert: Path
    key: Path
    chain: Path
    subject: str


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def openssl(*args: str, cwd: Path | None = None) -> str:
    """Runs `openssl args...`; HarnessError with its output when it fails."""
    try:
        result = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd,
                                timeout=OPENSSL_TIMEOUT_S)
    except FileNotFoundError as error:
        raise HarnessError("openssl not found on PATH (Debian package openssl)") from error
    if result.returncode != 0:
        raise HarnessError(f"openssl {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


class TestPki:
    """The test CA, the rogue CA and every certificate the TLS tests use, in one directory."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.ca_file = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"
        self.ca_dir = self.dir / "ca-dir"  # hashed directory (openssl rehash) holding the CA
        self.rogue_ca_file = self.dir / "rogue-ca.crt"
        self.rogue_ca_key = self.dir / "rogue-ca.key"
        self.srs = self._identity("srs")
        self.srs_dns_only = self._identity("srs-dns-only")  # SAN DNS:srs.test only, no IP
        self.wrong_host = self._identity("wrong-host")
        self.expired = self._identity("expired")
        self.untrusted = self._identity("untrusted")
        self.client = self._identity("client")
        self.edge = self._identity("edge")
        self.other_key = self.dir / "other.key"  # matches none of the certificates
        self.garbage = self.dir / "garbage.pem"  # not PEM at all
        self.missing = self.dir / "does-not-exist.pem"

    def _identity(self, name: str) -> Identity:
        return Identity(name, self.dir / f"{name}.crt", self.dir / f"{name}.key",
                        self.dir / f"{name}-chain.pem", "")

    # --- generation

    def generate(self) -> "TestPki":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca(self.ca_key, self.ca_file, CA_SUBJECT)
        self._ca(self.rogue_ca_key, self.rogue_ca_file, ROGUE_CA_SUBJECT)
        server = "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"
        self._leaf(self.srs, "/CN=127.0.0.1",
                   server + f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{SERVER_NAME}\n")
        self._leaf(self.srs_dns_only, f"/CN={SERVER_NAME}",
                   server + f"subjectAltName=DNS:{SERVER_NAME}\n")
        # Another host: neither the IP address nor any name of the SRS; the CN is the SRS's
        # address on purpose, to catch a check that looks at the CN instead of the SAN.
        self._leaf(self.wrong_host, "/CN=127.0.0.1",
                   server + "subjectAltName=DNS:wrong.example,IP:127.0.0.2\n")
        self._leaf(self.untrusted, "/CN=127.0.0.1",
                   server + "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
                   ca=(self.rogue_ca_key, self.rogue_ca_file))
        self._leaf(self.client, f"/CN={CLIENT_CN}",
                   "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
                   f"subjectAltName=DNS:{CLIENT_CN}\n")
        self._leaf(self.edge, "/CN=siprec-edge",
                   "extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n"
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        self._expired_leaf()
        self._key(self.other_key)
        self.garbage.write_text("this is not a PEM file\n")
        self.ca_dir.mkdir(exist_ok=True)
        shutil.copy(self.ca_file, self.ca_dir / "siprec-edge-test-ca.pem")
        openssl("rehash", str(self.ca_dir))
        return self

    def _key(self, path: Path) -> None:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", str(path))

    def _ca(self, key: Path, cert: Path, subject: str) -> None:
        self._key(key)
        openssl("req", "-new", "-x509", "-key", str(key), "-out", str(cert), "-days", "30",
                "-sha256", "-subj", subject,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _leaf(self, identity: Identity, subject: str, extensions: str,
              ca: tuple[Path, Path] | None = None) -> None:
        ca_key, ca_cert = ca or (self.ca_key, self.ca_file)
        csr = self.dir / f"{identity.name}.csr"
        ext = self.dir / f"{identity.name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\n" + extensions)
        self._key(identity.key)
        openssl("req", "-new", "-key", str(identity.key), "-out", str(csr), "-subj", subject)
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                "-CAcreateserial", "-out", str(identity.cert), "-days", "30", "-sha256",
                "-extfile", str(ext))
        self._chain(identity, ca_cert, subject)

    def _expired_leaf(self) -> None:
        """Valid from 2020-01-01 to 2020-01-02, signed by the test CA: `openssl x509` of
        OpenSSL 3.0 cannot set a start date, `openssl ca` can (with a throw-away database)."""
        identity = self.expired
        subject = "/CN=127.0.0.1"
        db = self.dir / "expired-ca-db"
        db.mkdir(exist_ok=True)
        (db / "index.txt").write_text("")
        (db / "serial").write_text("1000\n")
        config = db / "ca.cnf"
        config.write_text(f"""\
[ca]
default_ca = test_ca
[test_ca]
database = {db}/index.txt
new_certs_dir = {db}
serial = {db}/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = leaf
[anything]
commonName = supplied
[leaf]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
keyUsage = critical,digitalSignature
subjectAltName = IP:127.0.0.1,DNS:localhost
""")
        csr = self.dir / "expired.csr"
        self._key(identity.key)
        openssl("req", "-new", "-key", str(identity.key), "-out", str(csr), "-subj", subject)
        openssl("ca", "-batch", "-config", str(config), "-cert", str(self.ca_file),
                "-keyfile", str(self.ca_key), "-in", str(csr), "-out", str(identity.cert),
                "-startdate", EXPIRED_NOT_BEFORE, "-enddate", EXPIRED_NOT_AFTER, "-notext")
        self._chain(identity, self.ca_file, subject)

    def _chain(self, identity: Identity, issuer: Path, subject: str) -> None:
        identity.chain.write_bytes(identity.cert.read_bytes() + issuer.read_bytes())
        identity.subject = subject

    # --- inspection (for the checks of the harness)

    def text(self, cert: Path) -> str:
        return openssl("x509", "-in", str(cert), "-noout", "-text")

    def verify(self, cert: Path, ca_file: Path | None = None) -> tuple[bool, str]:
        """`openssl verify -CAfile` (the test CA by default): (ok, output)."""
        try:
            output = openssl("verify", "-CAfile", str(ca_file or self.ca_file), str(cert))
            return True, output
        except HarnessError as error:
            return False, str(error)

    @staticmethod
    def public_key(path: Path, of_cert: bool) -> str:
        """The PEM public key of a certificate or of a private key, to compare them."""
        if of_cert:
            return openssl("x509", "-in", str(path), "-noout", "-pubkey")
        return openssl("pkey", "-in", str(path), "-pubout")
