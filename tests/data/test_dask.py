"""The Dask engine on a LocalCluster (127.0.0.1): the same output as the local engine, also after a
worker process is killed mid-run; each worker opens the flow itself and checks it is the same."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

pytest.importorskip("distributed")

from fmflow.data import DataError, run_batch  # noqa: E402
from fmflow.data.batch import BatchJob  # noqa: E402

from test_batch_cli import SLOW, check_exactly_once, fmflow, questions, write  # noqa: E402


def test_the_dask_engine_writes_what_the_local_engine_writes(tmp_path):
    flow = write(tmp_path / "flow.fmflow", SLOW)
    data = questions(tmp_path / "in.jsonl", 300)
    with (tmp_path / "in.jsonl").open("a") as f:
        f.write('{"q": 1}\nnot json\n')
    common = ["batch", flow, "--input", data, "--concurrency", "8", "--ordered"]
    local = fmflow(tmp_path, *common, "--output", "local.jsonl")
    dask = fmflow(tmp_path, *common, "--output", "dask.jsonl", "--engine", "dask")
    assert local.returncode == dask.returncode == 1, dask.stderr  # the two bad lines
    assert "engine dask" in dask.stderr and "Traceback" not in dask.stderr
    assert (tmp_path / "dask.jsonl").read_text() == (tmp_path / "local.jsonl").read_text()
    unordered = fmflow(tmp_path, *common[:-1], "--output", "any.jsonl", "--engine", "dask")
    assert unordered.returncode == 1
    assert sorted((tmp_path / "any.jsonl").read_text().splitlines()) == \
        sorted((tmp_path / "local.jsonl").read_text().splitlines())


@pytest.fixture
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      processes=True) as cluster, Client(cluster) as client:
        yield cluster, client


def test_a_worker_killed_mid_run_loses_no_record(tmp_path, cluster, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cluster, client = cluster
    flow = write(tmp_path / "flow.fmflow", SLOW)
    data = questions(tmp_path / "in.jsonl", 1000)
    pids = sorted(client.run(os.getpid).values())
    assert len(pids) == 2
    halfway, failure = threading.Event(), []

    def progress(totals):
        if totals.done >= 200:
            halfway.set()

    def batch():
        try:
            run_batch(str(flow), str(data), str(tmp_path / "dask.jsonl"), engine="dask", concurrency=8,
                      scheduler=cluster.scheduler_address, ordered=True, progress=progress)
        except BaseException as error:  # reported by the test below
            failure.append(error)
            halfway.set()

    thread = threading.Thread(target=batch)
    thread.start()
    try:
        assert halfway.wait(120)
        os.kill(pids[0], signal.SIGKILL)
    finally:
        thread.join(180)
    assert not thread.is_alive() and not failure, failure
    restarted = sorted(client.run(os.getpid).values())
    assert pids[0] not in restarted  # the worker really died (its nanny started another)
    check_exactly_once(tmp_path / "dask.jsonl", 1000)
    run_batch(str(flow), str(data), str(tmp_path / "local.jsonl"), concurrency=8, ordered=True)
    assert (tmp_path / "dask.jsonl").read_text() == (tmp_path / "local.jsonl").read_text()


def test_a_worker_refuses_a_flow_that_is_not_the_one_of_the_batch(tmp_path):
    flow = write(tmp_path / "flow.fmflow", SLOW)
    job = BatchJob(str(flow), "go", flow_hash="not the hash of this file")
    with pytest.raises(DataError, match="differs from the one the batch was started with"):
        asyncio.run(job.open(share=2))


def test_a_job_travels_without_its_program(tmp_path):
    import pickle

    from fmflow.data.batch import flow_hash, load_checked

    flow = write(tmp_path / "flow.fmflow", SLOW)
    program = load_checked(str(flow))
    job = BatchJob(str(flow), "go", flow_hash(program), program=program)
    copy = pickle.loads(pickle.dumps(job))
    assert copy.program is None and copy == job and hash(copy) == hash(job)
    runner = asyncio.run(copy.open(share=2))
    assert runner.options.limit_share == 2


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    import socket

    import fmflow.data.dask_engine as engine

    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 2.0)
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flow = write(tmp_path / "flow.fmflow", SLOW)
    data = questions(tmp_path / "in.jsonl", 3)
    with pytest.raises(DataError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        run_batch(str(flow), str(data), str(tmp_path / "out.jsonl"), engine="dask",
                  scheduler=f"tcp://127.0.0.1:{port}")
    assert not (tmp_path / "out.jsonl").exists()  # nothing was started: a later run needs no --overwrite


def test_the_local_clusters_own_error_logs_stay_off_the_terminal(tmp_path):
    """A worker's heartbeat that meets the scheduler closing logs a Dask traceback at ERROR level; on
    a loaded machine that happens at the end of a successful job. The job's own failures reach the
    output as error lines, so the local cluster's logs are silenced up to CRITICAL."""
    write(tmp_path / "noisy.py", '''
import logging

def note(q: str) -> str:
    logging.getLogger("distributed.worker").error("Failed to communicate with scheduler during heartbeat.")
    return q
''')
    flow = write(tmp_path / "flow.fmflow", '''
        tool note(q: str) -> str = python("noisy:note")
        flow go(q: str) -> str {
          return note(q)
        }
    ''')
    data = questions(tmp_path / "in.jsonl", 4)
    done = fmflow(tmp_path, "batch", flow, "--input", data, "--output", "out.jsonl", "--engine", "dask")
    assert done.returncode == 0, done.stderr
    assert "heartbeat" not in done.stderr and "engine dask" in done.stderr
