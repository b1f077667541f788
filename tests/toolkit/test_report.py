"""The HTML report: its sections and numbers, byte-for-byte reruns, and a real browser."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import toolkit
from toolkit.report import flag_statistics, health_summary, most_anomalous, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or \
    shutil.which("google-chrome")


@pytest.fixture(scope="module")
def run():
    fleet = toolkit.make_fleet(n_devices=6, days=1, seed=3, anomaly_rate=3)
    ds = fleet.dataset
    scores = toolkit.rolling_zscore(ds, 60, min_count=45)
    flags = toolkit.zscore_flags(scores, 6.0, values=ds)
    events = toolkit.flags_to_events(flags, scores)
    gaps = pd.DataFrame({"device": [str(ds.device.values[0])], "metric": ["temperature"],
                         "start": [ds.time.values[10]], "end": [ds.time.values[40]],
                         "kind": ["time_gap"], "score": [0.0]})
    return ds, flags.compute(), pd.concat([events, gaps], ignore_index=True)


def test_sections_numbers_and_reruns_byte_for_byte(run, tmp_path):
    ds, flags, events = run
    params = {"window": 60, "threshold": 6.0}
    path = write_report(tmp_path / "r.html", ds, flags=flags, events=events, params=params,
                        load_report="load report: 1 file(s)", top=3)
    text = path.read_text()
    for section in ("Run parameters", "Load report", "Fleet overview",
                    "Most anomalous devices", "Flag statistics per metric", "Device health",
                    "Events with the highest scores"):
        assert f"<h2>{section}</h2>" in text
    assert events.device.nunique() >= 3
    assert text.count("<img") == 2 + 3  # two heatmaps, three devices' traces
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert all(src.startswith("data:image/png;base64,")
               for src in re.findall(r'<img src="([^"]+)"', text))
    again = write_report(tmp_path / "again.html", ds, flags=flags, events=events,
                         params=params, load_report="load report: 1 file(s)", top=3)
    assert again.read_bytes() == path.read_bytes()


def test_traces_drawn_on_the_workers_give_the_same_file(run, tmp_path, client):
    ds, flags, events = run
    here = write_report(tmp_path / "here.html", ds, flags=flags, events=events, top=3)
    from distributed import get_task_stream

    with get_task_stream(client) as ts:
        there = write_report(tmp_path / "there.html", ds, flags=flags, events=events, top=3,
                             client=client)
    assert there.read_bytes() == here.read_bytes()
    assert there.read_text().count("<img") == 2 + 3
    # each device's figure was drawn in a worker process
    assert sum("_series_png" in str(t["key"]) for t in ts.data) == 3


def test_health_summary_and_flag_statistics_agree_with_flags_and_events(run):
    ds, flags, events = run
    health = health_summary(ds, flags, events)
    assert list(health.index) == [str(d) for d in ds.device.values]
    per_device = events.device.astype(str).value_counts()
    kinds = [c for c in health.columns if c.startswith("events_")]
    assert (health[kinds].sum(axis=1) == per_device.reindex(health.index, fill_value=0)).all()
    assert health.gaps.sum() == 1 and health.stuck_periods.sum() == 0
    suspect = sum(int((flags[m] == 3).sum()) for m in flags.data_vars)
    assert health.flags_suspect.sum() == suspect
    stats = flag_statistics(flags)
    assert stats.suspect.sum() == suspect
    assert (stats[["pass", "not_evaluated", "suspect", "fail", "missing"]].sum(axis=1)
            == ds.sizes["device"] * ds.sizes["time"]).all()
    present = sum(int(ds[m].notnull().sum()) for m in toolkit.model.metric_names(ds))
    assert np.isclose((health.coverage_pct / 100 * 4 * ds.sizes["time"]).sum(), present)
    top = most_anomalous(events, 2)
    assert top[0] == per_device.index[0]


async def _inspect(chromium: str, url: str) -> dict:
    """Open ``url`` in headless Chromium over the DevTools protocol: console errors,
    exceptions, failed loads, and each image's completeness and natural width."""
    import aiohttp

    profile = tempfile.mkdtemp(prefix="toolkit-chromium-")
    proc = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                             "--no-first-run", f"--user-data-dir={profile}",
                             "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile, "DevToolsActivePort")
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json(content_type=None)
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"],
                                          max_msg_size=0) as ws:
                ids = iter(range(1, 10**6))
                errors, replies = [], {}

                async def call(method, **params):
                    key = next(ids)
                    await ws.send_str(json.dumps({"id": key, "method": method,
                                                  "params": params}))
                    while key not in replies:
                        await pump()
                    return replies.pop(key)

                loaded = asyncio.Event()

                async def pump():
                    msg = json.loads((await ws.receive(timeout=60)).data)
                    if "id" in msg:
                        replies[msg["id"]] = msg
                    method = msg.get("method")
                    if method == "Page.loadEventFired":
                        loaded.set()
                    elif method == "Runtime.exceptionThrown":
                        errors.append(msg["params"]["exceptionDetails"].get("text"))
                    elif method == "Runtime.consoleAPICalled" and \
                            msg["params"]["type"] in ("error", "assert"):
                        errors.append(str(msg["params"]["args"]))
                    elif method == "Log.entryAdded" and \
                            msg["params"]["entry"]["level"] == "error":
                        errors.append(msg["params"]["entry"]["text"])
                    elif method == "Network.loadingFailed":
                        errors.append(msg["params"].get("errorText"))

                for domain in ("Page", "Runtime", "Log", "Network"):
                    await call(f"{domain}.enable")
                await call("Page.navigate", url=url)
                started = time.monotonic()
                while not loaded.is_set() and time.monotonic() - started < 60:
                    await pump()
                result = await call("Runtime.evaluate", returnByValue=True, expression=(
                    "Array.from(document.images).map(i => [i.complete, i.naturalWidth])"))
                images = result["result"]["result"]["value"]
                title = (await call("Runtime.evaluate", returnByValue=True,
                                    expression="document.title"))["result"]["result"]["value"]
                return {"errors": errors, "images": images, "title": title,
                        "loaded": loaded.is_set()}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package "
                    "'chromium'; .ci/run installs it)")
def test_the_report_opens_in_headless_chromium_with_every_image_loaded(run, tmp_path):
    ds, flags, events = run
    path = write_report(tmp_path / "report.html", ds, flags=flags, events=events,
                        params={"window": 60}, title="browser check")
    seen = asyncio.run(_inspect(CHROMIUM, path.as_uri()))
    assert seen["loaded"] and seen["title"] == "browser check"
    assert seen["errors"] == []
    assert len(seen["images"]) == 2 + min(5, events.device.nunique())
    assert all(complete and width > 0 for complete, width in seen["images"])
    # the check can fail: a broken image is seen as one
    broken = path.read_text().replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA",
                                      1)
    (tmp_path / "broken.html").write_text(broken)
    seen = asyncio.run(_inspect(CHROMIUM, (tmp_path / "broken.html").as_uri()))
    assert any(width == 0 for _, width in seen["images"])


def test_the_demo_writes_its_report(tmp_path, client):
    from toolkit.demo import run_demo

    result = run_demo(devices=4, days=1, seed=2, out=tmp_path, client=client,
                      echo=lambda _: None)
    text = (tmp_path / "report.html").read_text()
    assert "<h2>Most anomalous devices</h2>" in text
    assert text.count("<img") >= 2 + min(5, result.events.device.nunique())
    assert os.path.getsize(tmp_path / "report.html") > 10_000
