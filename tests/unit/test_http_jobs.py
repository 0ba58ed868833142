"""The Gatys job store without Ray: jobs kept in ``jobs_dir`` outlive the replica keeping them,
and polls through the ingress answer at once while the store is away."""

import asyncio
import json

import pytest
from ray.exceptions import ActorDiedError
from test_http_app import Handle, api, call

from genart.serve import jobs, validation

Store = jobs.JobStore.func_or_class  # the class itself, not its Serve deployment
SETTINGS = {"size": 32, "iterations": 20}


def test_jobs_and_results_survive_a_restart(tmp_path):
    async def first_life():
        store = Store(4, str(tmp_path))
        done, running, queued = [await store.create(SETTINGS) for _ in range(3)]
        await store.update(done, status="running", started=1.0)
        await store.finish(done, b"png bytes", {"losses": {"total": 1.5}})
        await store.update(running, status="running", progress={"evaluations": 5, "total": 20})
        return done, running, queued

    done, running, queued = asyncio.run(first_life())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{done}.json", f"{done}.png", f"{running}.json", f"{queued}.json"]
    )

    async def second_life():  # a new replica: nothing in memory
        store = Store(4, str(tmp_path))
        return (await store.get(done), await store.result(done), await store.get(running),
                await store.get(queued), await store.get("no-such-job"))  # fmt: skip

    got_done, png, got_running, got_queued, missing = asyncio.run(second_life())
    assert got_done["status"] == "done" and got_done["info"] == {"losses": {"total": 1.5}}
    assert png == b"png bytes"
    assert got_running["status"] == "running" and got_running["settings"] == SETTINGS
    assert got_queued["status"] == "queued" and missing is None


def test_a_running_job_whose_worker_stopped_reporting_fails_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "HEARTBEAT_TIMEOUT_S", 0.05)

    async def scenario():
        store = Store(4, str(tmp_path))
        job_id = await store.create(SETTINGS)
        await store.update(job_id, status="running")
        assert (await store.get(job_id))["status"] == "running"
        await asyncio.sleep(0.1)  # no report since
        return job_id, await store.get(job_id)

    job_id, job = asyncio.run(scenario())
    assert job["status"] == "failed" and "stopped reporting" in job["error"]
    saved = json.loads((tmp_path / f"{job_id}.json").read_text())
    assert saved["status"] == "failed"  # so a restarted store says so too


def test_a_finished_job_is_not_abandoned_and_late_reports_are_dropped(tmp_path):
    async def scenario():
        store = Store(4, str(tmp_path))
        job_id = await store.create(SETTINGS)
        await store.finish(job_id, b"png", {})
        await store.abandon(job_id, "its worker stopped")  # the reply of run_job was lost
        await store.update(job_id, status="running", progress={"evaluations": 1})
        return await store.get(job_id)

    job = asyncio.run(scenario())
    assert job["status"] == "done" and "error" not in job


def test_evicted_jobs_take_their_files_with_them(tmp_path):
    async def scenario():
        store = Store(2, str(tmp_path))
        old = await store.create(SETTINGS)
        await store.finish(old, b"png", {})
        failed = await store.create(SETTINGS)
        await store.abandon(failed, "not run")
        kept = [await store.create(SETTINGS) for _ in range(2)]  # each evicts the oldest finished
        with pytest.raises(jobs.v.RequestError) as full:
            await store.create(SETTINGS)  # two queued: nothing finished to evict
        return kept, full.value

    kept, full = asyncio.run(scenario())
    assert {p.name for p in tmp_path.iterdir()} == {f"{job_id}.json" for job_id in kept}
    assert full.status == 503 and "2 Gatys jobs are in progress" in full.reason


def test_without_a_jobs_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def scenario():
        store = Store(2)
        job_id = await store.create(SETTINGS)
        await store.finish(job_id, b"png", {})
        return await store.result(job_id)

    assert asyncio.run(scenario()) == b"png" and not list(tmp_path.iterdir())


# --- polling through the ingress while the store is away ---------------------------------------


async def never_answers(*args, **kwargs):
    await asyncio.Event().wait()  # a store replica that died: Serve waits for its successor


async def replica_died(*args, **kwargs):
    raise ActorDiedError()


@pytest.mark.parametrize("store", [never_answers, replica_died], ids=["restarting", "died"])
@pytest.mark.parametrize("path", ["/gatys/jobs/abc", "/gatys/jobs/abc/result"])
def test_polls_while_the_store_is_away_are_503_with_retry_after(store, path):
    reply = call(api(jobs=Handle(get=store, result=store)), "GET", path)
    assert reply.status == 503 and reply.headers["retry-after"] == "3"
    assert "retry later" in reply.json()["detail"]


def test_polls_name_the_job_briefly_and_say_what_it_is_doing():
    async def get(job_id):
        return {"id": job_id, "status": "running"} if job_id == "abc" else None

    asgi = api(jobs=Handle(get=get))
    reply = call(asgi, "GET", "/gatys/jobs/abc/result")
    assert reply.status == 404 and reply.json()["detail"] == "job 'abc' is running: no result"
    reply = call(asgi, "GET", "/gatys/jobs/" + "x" * 5000)
    assert reply.status == 404 and len(reply.body) < 300
    assert f"'{'x' * validation.MAX_ECHOED_CHARS}...'" in reply.json()["detail"]
