"""Staged imports on object storage (MMSEARCH_STAGING_URL): posted items and uploaded files go to an S3 bucket
(moto's S3 server on loopback, reached by s3fs like any S3-compatible store), a job reads them from there, and
the object is removed once the job succeeded; nothing stays under HOME/jobs."""

from __future__ import annotations

import copy
import io
import json

import pytest

from conftest import EXAMPLE_SCHEMA, VECTOR_DIM
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder
from mmsearch.ingest.jobs import JobRunner, submit_body, submit_upload
from mmsearch.ingest.staging import Staging

moto_server = pytest.importorskip("moto.server", reason="moto (dev) runs the S3 server")
pytest.importorskip("s3fs", reason="s3fs reads and writes s3:// URLs")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    from processes import free_port

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir("staged")
        yield fs
        s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def _engine(tmp_path) -> MMSearch:
    mm = MMSearch(Settings(home=tmp_path, ocr=False, staging_url="s3://staged/imports"),
                  encoder=HashingEncoder(VECTOR_DIM))
    mm.create_dataset("products", copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=VECTOR_DIM)
    return mm


def test_posted_items_wait_in_the_bucket_and_are_removed_once_imported(bucket, tmp_path, product_items):
    mm = _engine(tmp_path)
    job = submit_body(mm, "products", json.dumps(product_items).encode())
    assert job.source == f"s3://staged/imports/{job.id}.ndjson"
    assert bucket.exists(f"staged/imports/{job.id}.ndjson")
    assert not list((tmp_path / "jobs").glob("*"))  # nothing kept locally
    runner = JobRunner(mm)
    done = runner.run(mm.catalog.jobs.claim(runner.worker))
    assert done.status == "succeeded" and done.imported == len(product_items)
    assert mm.store.count(mm.dataset("products")) == len(product_items)
    assert not bucket.exists(f"staged/imports/{job.id}.ndjson")
    assert not list((tmp_path / "jobs").glob("*"))  # the downloaded copy is gone too


def test_an_uploaded_file_is_counted_locally_then_staged_in_the_bucket(bucket, tmp_path):
    mm = _engine(tmp_path)
    csv = "item_id,title,status\nc1,红色 跑步鞋,1\nc2,蓝色 帆布包,2\n".encode()
    job = submit_upload(mm, "products", "items.csv", io.BytesIO(csv))
    assert job.total == 2 and job.source.startswith("s3://staged/imports/") and job.source.endswith(".csv")
    runner = JobRunner(mm)
    assert runner.run(mm.catalog.jobs.claim(runner.worker)).imported == 2
    assert mm.get("products", ["c2"])[0]["title"] == "蓝色 帆布包"


def test_a_job_whose_staged_object_is_gone_fails_saying_so(bucket, tmp_path):
    mm = _engine(tmp_path)
    job = submit_body(mm, "products", b'{"item_id": "x1", "title": "t"}')
    Staging(tmp_path, "s3://staged/imports").remove(job.source)
    runner = JobRunner(mm)
    done = runner.run(mm.catalog.jobs.claim(runner.worker))
    assert done.status == "failed" and "is gone" in done.message and job.source in done.message
