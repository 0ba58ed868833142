"""The playground page in headless Chromium: it loads, lists the models, and stylises an upload
with a fast style and with AdaIN's named style.

The browser is driven over the Chrome DevTools Protocol (a websocket, via aiohttp, which Ray
Serve already depends on). Needs Debian's chromium package:
``apt-get install -y --no-install-recommends chromium``.
"""

import asyncio
import json
import re
import shutil
import subprocess

import pytest
import requests

from genart.serve import builder, demo
from genart.serve.ray_settings import free_ports

pytestmark = pytest.mark.ray

BROWSER = next(
    (
        path
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (path := shutil.which(name))
    ),
    None,
)

# Runs in the page: upload a generated 40x30 PNG, pick ACTION, set the CONTROLS (element id ->
# value, checked state, or [width, height, colour] of a PNG to choose in a file input), press
# Run, wait for the result; compare its pixels with the upload's.
STYLISE = """
(async () => {
  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  for (let i = 0; i < 400 && !document.querySelector("#action option"); i++) await sleep(50);
  const canvas = document.createElement("canvas");
  canvas.width = 40; canvas.height = 30;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#3a7"; ctx.fillRect(0, 0, 40, 30);
  ctx.fillStyle = "#a37"; ctx.fillRect(5, 5, 20, 10);
  const blob = await new Promise((r) => canvas.toBlob(r, "image/png"));
  const files = new DataTransfer();
  files.items.add(new File([blob], "upload.png", {type: "image/png"}));
  $("image").files = files.files;
  $("image").dispatchEvent(new Event("change"));
  $("action").value = ACTION;
  $("action").dispatchEvent(new Event("change"));
  const png = async (width, height, colour) => {
    const c = document.createElement("canvas");
    c.width = width; c.height = height;
    const g = c.getContext("2d");
    g.fillStyle = colour; g.fillRect(0, 0, width, height);
    const blob = await new Promise((r) => c.toBlob(r, "image/png"));
    return new File([blob], "mask.png", {type: "image/png"});
  };
  for (const [id, value] of Object.entries(CONTROLS)) {
    if (typeof value === "boolean") $(id).checked = value;
    else if (Array.isArray(value)) {
      const chosen = new DataTransfer();
      chosen.items.add(await png(...value));
      $(id).files = chosen.files;
    } else $(id).value = value;
  }
  $("run").click();
  const done = () => $("status").textContent.startsWith("done");
  const busy = () => $("status").className !== "error" && !done();
  for (let i = 0; i < 1200 && busy(); i++) await sleep(50);
  if ($("result").src) await $("result").decode();
  const pixels = (image) => {
    const c = document.createElement("canvas");
    c.width = 40; c.height = 30;
    c.getContext("2d").drawImage(image, 0, 0);
    return c.getContext("2d").getImageData(0, 0, 40, 30).data;
  };
  const got = $("result").naturalWidth === 40 ? pixels($("result")) : [];
  const sent = pixels(canvas);
  const differ = got.length !== sent.length || got.some((v, i) => Math.abs(v - sent[i]) > 1);
  return {status: $("status").textContent, error: $("status").className === "error",
          same_as_upload: !differ,
          options: [...document.querySelectorAll("#action option")].map((o) => o.value),
          width: $("result").naturalWidth, height: $("result").naturalHeight};
})()
"""


@pytest.fixture(scope="module")
def playground_url(ray_local, tmp_path_factory):
    from ray import serve

    root = tmp_path_factory.mktemp("m")
    overrides = ["fast_style.width=8", "fast_style.residual_blocks=1"]
    demo.export_initialised("fast_style", overrides, root / "cat" / "mosaic",
                            checkpoints=root / "checkpoints")  # fmt: skip
    demo.export_initialised("adain", ["adain.vgg_weights=random", "adain.width=8"],
                            root / "cat" / "sketch")  # fmt: skip
    settings = {
        "catalogue": {"uri": str(root / "cat"), "adain": "sketch"},
        "adain": {"styles": {"demo": str(demo.demo_style(root))}},
    }
    light = {"ray_actor_options": {"num_cpus": 0.1}}
    (port,) = free_ports(1)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    application = builder.build(
        settings, {"Ingress": light, "ImageModels": light, "LatentModels": light, "AdaIN": light}
    )
    serve.run(application, name="playground", logging_config={"enable_access_log": False})
    yield f"http://127.0.0.1:{port}/"
    serve.shutdown()


@pytest.fixture
def devtools(tmp_path):
    """The websocket URL of a page in a fresh headless Chromium."""
    if BROWSER is None:
        pytest.skip(
            "chromium is not installed: apt-get install -y --no-install-recommends chromium"
        )
    process = subprocess.Popen(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--remote-debugging-port=0", f"--user-data-dir={tmp_path}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in process.stderr:  # Chromium prints its DevTools endpoint on start
            if match := re.search(r"DevTools listening on ws://([\d.:]+)/", line):
                break
        else:
            pytest.fail("chromium exited without a DevTools endpoint")
        targets = requests.get(f"http://{match[1]}/json/list", timeout=10).json()
        yield next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
    finally:
        process.kill()
        process.wait()


async def in_page(ws_url: str, url: str, script: str) -> dict:
    """Open ``url`` in the page, then the value of the (async) ``script`` evaluated there."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        ids = iter(range(1, 10**6))

        async def call(method: str, **params) -> dict:
            request_id = next(ids)
            await ws.send_json({"id": request_id, "method": method, "params": params})
            async for message in ws:
                reply = json.loads(message.data)
                if reply.get("id") == request_id:
                    assert "error" not in reply, reply
                    return reply["result"]
            raise ConnectionError("DevTools closed the connection")

        await call("Page.navigate", url=url)
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        while not (await call("Runtime.evaluate", expression=loaded))["result"]["value"]:
            await asyncio.sleep(0.05)
        result = await call("Runtime.evaluate", expression=script, awaitPromise=True,
                            returnByValue=True, timeout=60_000)  # fmt: skip
        assert "exceptionDetails" not in result, result
        return result["result"]["value"]


@pytest.mark.parametrize(
    ("action", "controls", "same_as_upload"),
    [
        ("style:mosaic", {}, False),
        ("style:mosaic", {"strength": "0"}, True),  # the slider at 0 gives the upload back
        ("style:mosaic", {"preserve-color": True}, False),
        ("adain:demo", {"preserve-color": True}, False),
        ("adain:demo", {"mask": [40, 30, "#fff"]}, False),
    ],
)
def test_playground_stylises_an_upload(playground_url, devtools, action, controls, same_as_upload):
    script = STYLISE.replace("ACTION", json.dumps(action)).replace("CONTROLS", json.dumps(controls))
    outcome = asyncio.run(in_page(devtools, playground_url, script))
    assert outcome["options"] == ["style:mosaic", "adain", "adain:demo"]
    assert outcome["status"].startswith("done"), outcome
    assert (outcome["width"], outcome["height"]) == (40, 30)
    assert outcome["same_as_upload"] == same_as_upload


def test_playground_says_why_a_mask_was_refused(playground_url, devtools):
    controls = {"mask": [20, 30, "#fff"]}  # half the upload's width
    script = STYLISE.replace("ACTION", json.dumps("adain:demo"))
    outcome = asyncio.run(
        in_page(devtools, playground_url, script.replace("CONTROLS", json.dumps(controls)))
    )
    assert outcome["error"] and "mask is 20x30 but the content is 40x30" in outcome["status"]
