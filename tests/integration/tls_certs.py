"""Test PKI made at test time with the `openssl` CLI: one CA and certificates signed by it.

Nothing is checked in: every run makes fresh keys (EC P-256, quick to generate).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import unavailable


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


class TestPki:
    """A CA in `folder`; `issue(name)` signs a certificate for a Diameter identity."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, ca_name: str = "OCS test CA") -> None:
        if shutil.which("openssl") is None:
            unavailable("the openssl command")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = Cert(folder / "ca.pem", folder / "ca.key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", self.ca.key, "-out", self.ca.cert, "-days", "2",
                  "-subj", f"/CN={ca_name}",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _run(self, *args: object) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True,
                       cwd=self.folder)

    def issue(self, cn: str, dns: tuple[str, ...] | None = None, *,
              ca: TestPki | None = None, file_stem: str | None = None) -> Cert:
        """A certificate with subject CN=`cn` and subjectAltName DNS `dns` (default: the CN;
        () for none), signed by this CA (or by `ca`)."""
        signer = ca or self
        stem = file_stem or cn.replace("*", "star")
        out = Cert(self.folder / f"{stem}.pem", self.folder / f"{stem}.key")
        csr = self.folder / f"{stem}.csr"
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", out.key, "-out", csr, "-subj", f"/CN={cn}")
        ext = self.folder / f"{stem}.ext"
        names = (cn,) if dns is None else dns
        lines = ["basicConstraints=CA:FALSE",
                 "keyUsage=digitalSignature,keyEncipherment",
                 "extendedKeyUsage=serverAuth,clientAuth"]
        if names:
            lines.append("subjectAltName=" + ",".join(f"DNS:{n}" for n in names))
        ext.write_text("\n".join(lines) + "\n")
        self._run("x509", "-req", "-in", csr, "-CA", signer.ca.cert, "-CAkey", signer.ca.key,
                  "-CAcreateserial", "-out", out.cert, "-days", "2", "-extfile", ext)
        return out
