"""A real S3 endpoint for the archive tests: ``moto_server`` (``moto[server]``, in the test
extras) on a free loopback port, and fixtures for a bucket prefix per test.

moto's S3 keeps its state in memory (a restart loses everything), answers a write-once
``PUT`` (``If-None-Match: *``) on an existing key with 412, ranged GETs with 206, and
accepts any credentials unless started with ``INITIAL_NO_AUTH_ACTION_COUNT=0``.
Import the fixtures into a test module: ``from tests.support.s3 import bucket,
credentials, s3_endpoint  # noqa: F401 - fixtures``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from moonfire.db import ArchiveRow
from moonfire.storage.archive import make_client
from tests.support.net import free_port, stop_process

BUCKET = "footage"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
}


def start_moto(**env: str) -> tuple[subprocess.Popen, str]:
    """``moto_server`` on a free loopback port, answering: (process, endpoint URL).  A
    missing moto fails (it is in the test extras), it never skips."""
    exe = shutil.which("moto_server")
    if exe is None:
        pytest.fail("moto_server is missing: pip install 'moto[server]' (the test extras)")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            env=dict(os.environ, **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            assert proc.poll() is None, "moto_server exited"
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                return proc, endpoint
            except urllib.error.HTTPError:
                return proc, endpoint  # it answers (with authentication on, 403)
            except OSError:
                assert time.monotonic() < deadline, "moto_server never answered"
                time.sleep(0.1)
    except BaseException:
        stop_process(proc, timeout=10)
        raise


def create_bucket(endpoint: str, bucket: str = BUCKET) -> None:
    client = make_client(ArchiveRow(0, "x", f"s3://{bucket}", endpoint, None, None, None))
    try:
        client.create_bucket(Bucket=bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[tuple[str, subprocess.Popen]]:
    """The module's shared ``moto_server`` (authentication off): (endpoint, process)."""
    proc, endpoint = start_moto()
    yield endpoint, proc
    stop_process(proc, timeout=10)


@pytest.fixture
def credentials(monkeypatch) -> None:
    """The S3 credentials moto takes, from the environment only (no ~/.aws files)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)


@pytest.fixture(scope="module")
def module_credentials() -> Iterator[None]:
    """``credentials`` for a module's fixtures (a module-scoped fixture can't use a
    function-scoped one)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        yield


@pytest.fixture
def bucket(s3_endpoint, credentials, request) -> str:
    """A fresh prefix of the bucket for each test: ``s3://footage/<test name>``."""
    endpoint, _proc = s3_endpoint
    create_bucket(endpoint)
    return f"s3://{BUCKET}/{request.node.name}"
