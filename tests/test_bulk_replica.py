"""bulk/replica.py: requests from manifest rows, and replicas on one node sharing one download."""

import threading
import time

import pytest
import test_hub

from qwen3tts_cli.bulk.manifest import ManifestRow
from qwen3tts_cli.bulk.replica import JobSpec, row_request, shared_model_folder
from qwen3tts_cli.errors import RequestError
from qwen3tts_cli.io import hub

fake_hub = test_hub.fake_hub  # the fixture: a hub on loopback
REPO = test_hub.REPO


def test_a_second_replica_waits_for_the_first_ones_download(fake_hub):
    from filelock import FileLock

    lock = FileLock(str(hub.hub_cache_dir() / ".locks" / hub.repo_cache_dir(REPO).name / "qwen3tts.lock"))
    lock.acquire()  # another replica is downloading
    got = {}
    waiter = threading.Thread(target=lambda: got.setdefault("folder", shared_model_folder(REPO, poll_s=0.05)))
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive() and "folder" not in got  # waiting, not failed
    lock.release()
    waiter.join(60)
    assert got["folder"] == hub.resolve_model(REPO, download_missing=False)
    assert (got["folder"] / "config.json").is_file()


def test_row_fields_over_the_job_defaults():
    spec = JobSpec(model="m", defaults=dict(speaker="ryan", language="english", greedy=True, seed=3, max_frames=9),
                   voices={"/v/me.safetensors": None})
    r = row_request(spec, ManifestRow("a", "Hello.", speaker="vivian", seed=5))
    assert (r.text, r.speaker, r.language, r.seed, r.max_frames, r.greedy) == ("Hello.", "vivian", "english", 5, 9,
                                                                              True)
    assert row_request(spec, ManifestRow("b", "Hi.")).speaker == "ryan"
    with pytest.raises(RequestError, match="seed must be"):
        row_request(spec, ManifestRow("c", "Hi.", seed=-1))
