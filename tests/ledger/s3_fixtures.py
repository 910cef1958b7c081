"""A local S3 for the S3 store's tests: moto's server mode on a free port, started by the test.

Moto accepts any credentials; the tests pass fixed ones through the
environment so that boto3's normal chain finds them (as in production).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "evidence-test", "AWS_SECRET_ACCESS_KEY": "evidence-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalS3:
    endpoint: str

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def bucket(self, *, lock: bool = False, versioned: bool = False, default_days: int | None = None) -> str:
        name = f"ev-{uuid.uuid4().hex[:16]}"
        c = self.client()
        if lock:
            c.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
            if default_days:
                c.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": default_days}}})
        else:
            c.create_bucket(Bucket=name)
            if versioned:
                c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "EVIDENCE_S3_ENDPOINT_URL": self.endpoint}


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture() -> Iterator[LocalS3]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield LocalS3(f"http://127.0.0.1:{port}")
    server.stop()


@pytest.fixture(name="s3")
def s3_fixture(s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch) -> LocalS3:
    """The server, with its endpoint and credentials in this process's environment."""
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    for k in ("EVIDENCE_ARTIFACTS", "EVIDENCE_S3_RETAIN_DAYS", "EVIDENCE_S3_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    return s3_server
