"""Every message of the shared pcap corpus, and thousands of mutations of them, thrown at the
proxy: it must neither crash nor stop routing. The flood runs in a private network namespace so
that nothing the proxy forwards (the corpus names real and private addresses) can leave loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import harness


def test_corpus_and_mutations_do_not_crash_the_proxy(proxy_kind):
    if proxy_kind != "siprec-edge":
        pytest.skip("the flood checks siprec-edge's robustness")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private network namespace")
    binary = harness.siprec_edge_binary()
    result = subprocess.run(
        ["unshare", "-n", sys.executable, str(harness.HERE / "corpus_flood.py"), str(binary),
         str(harness.REPO_ROOT / "Tests" / "Fixtures"), "3000"],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "proxy forwarded a call afterwards and stopped with status 0" in result.stdout
