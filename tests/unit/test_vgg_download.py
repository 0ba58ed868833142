"""``auto`` VGG weights: downloaded into the torch hub cache on first use, verified, atomically;
``genart weights fetch`` stages them. Files are served on 127.0.0.1, never from the internet."""

import hashlib
import http.server
import io
import threading

import pytest
import torch

from genart import download, pretrained, vgg
from genart.cli import main


class Server(http.server.ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) on 127.0.0.1; ``cut`` names those sent only half of."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[str] = []

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        name = self.path.lstrip("/")
        self.server.requests.append(name)
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # A cut transfer: the promised length, half the bytes, then the connection closes.
        self.wfile.write(body[: len(body) // 2] if name in self.server.cut else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A file server, downloads allowed, and a private torch hub cache."""
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    httpd = Server()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def weights():
    """A small torchvision-style VGG16 state_dict (up to relu1_2) and its file's bytes."""
    body = vgg.load_vgg("vgg16", "random", layers=("relu1_2",)).body.state_dict()
    state = {f"features.{key}": value + 1.0 for key, value in body.items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return state, buffer.getvalue()


def publish(server, monkeypatch, data: bytes, digest: str | None = None, arch="vgg16") -> str:
    """Serve ``data`` under torchvision's naming (``arch-<sha256 prefix>.pth``) as ``arch``'s."""
    name = f"{arch}-{(digest or hashlib.sha256(data).hexdigest())[:8]}.pth"
    server.files[name] = data
    monkeypatch.setitem(pretrained.TEST_URLS, arch, server.url(name))
    return name


def cache_dir():
    return pretrained.hub_cache_path("vgg16").parent


def leftovers() -> list[str]:
    return sorted(p.name for p in cache_dir().iterdir()) if cache_dir().exists() else []


def test_auto_downloads_into_the_hub_cache_with_progress_then_reuses_it(
    server, monkeypatch, weights, capsys
):
    state, data = weights
    name = publish(server, monkeypatch, data)
    net = vgg.load_vgg("vgg16", "auto", layers=("relu1_2",))
    assert torch.equal(net.body[2].weight, state["features.2.weight"])
    assert leftovers() == [name]  # the verified file under its own name; no temporary left
    assert pretrained.hub_cache_path("vgg16").read_bytes() == data
    out = capsys.readouterr().out
    assert f"genart: downloading {server.url(name)}" in out
    assert f"{name}: 100% of " in out and "MB/s" in out  # progress lines
    # A cache hit does no network.
    vgg.load_vgg("vgg16", "auto", layers=("relu1_1",))
    assert server.requests == [name]


@pytest.mark.parametrize(
    "fault, reason",
    [("cut", "transfer cut short"), ("hash", "wrong content"), ("missing", "HTTP 404")],
)
def test_failed_downloads_leave_nothing_and_say_why_on_one_line(
    server, monkeypatch, weights, fault, reason
):
    _, data = weights
    name = publish(server, monkeypatch, data, digest="0" * 8 if fault == "hash" else None)
    if fault == "cut":
        server.cut.add(name)
    if fault == "missing":
        del server.files[name]
    with pytest.raises(pretrained.WeightsNotFound) as err:
        vgg.load_vgg("vgg16", "auto", layers=("relu1_1",))
    message = str(err.value)
    assert reason in message and "\n" not in message, message
    assert message.startswith("could not download the vgg16 weights: ")
    assert "nothing was saved" in message and "--vgg-weights" in message
    assert server.requests == [name] and leftovers() == []


def test_an_interrupted_download_leaves_nothing(server, monkeypatch, weights):
    name = publish(server, monkeypatch, weights[1])
    target = cache_dir() / name

    def interrupt(line, progress=None):
        if progress:  # the first progress line: some bytes are on disk by now
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download.download(server.url(name), target, emit=interrupt)
    assert leftovers() == []


def test_offline_switch_fails_with_the_missing_weights_message(server, monkeypatch, weights):
    publish(server, monkeypatch, weights[1])
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with pytest.raises(pretrained.WeightsNotFound, match="downloading is off: GENART_OFFLINE=1"):
        vgg.load_vgg("vgg16", "auto", layers=("relu1_1",))
    assert server.requests == [] and leftovers() == []


def test_an_oversized_download_is_refused_before_writing(server, monkeypatch, weights):
    publish(server, monkeypatch, weights[1])
    monkeypatch.setattr(download, "MAX_BYTES", 1000)
    with pytest.raises(pretrained.WeightsNotFound, match="MB limit"):
        vgg.load_vgg("vgg16", "auto", layers=("relu1_1",))
    assert leftovers() == []


def test_the_hash_prefix_comes_from_the_file_name():
    assert download.hash_prefix("https://x/models/vgg16-397923af.pth") == "397923af"
    assert download.hash_prefix(pretrained.weights_url("vgg19")) == "dcbb9e9d"  # torchvision's URL
    with pytest.raises(ValueError, match="no sha256 prefix"):
        download.hash_prefix("https://x/models/vgg16.pth")


def test_fetch_stages_the_weights_in_a_folder(server, monkeypatch, weights, tmp_path, capsys):
    name = publish(server, monkeypatch, weights[1])
    stage = tmp_path / "stage"
    stage.mkdir()
    assert main(["weights", "fetch", "vgg16", "--to", str(stage)]) == 0
    cached = pretrained.hub_cache_path("vgg16").read_bytes()
    assert (stage / name).read_bytes() == weights[1] == cached
    assert (
        f"vgg16 weights: {stage / name} (pass --vgg-weights {stage / name}"
        in capsys.readouterr().out
    )
    # Fetching again reuses the cache; a file name is taken as given.
    assert main(["weights", "fetch", "vgg16", "--to", str(tmp_path / "v16.pth")]) == 0
    assert (tmp_path / "v16.pth").read_bytes() == weights[1] and server.requests == [name]


def test_fetch_failure_is_one_line_and_exit_2(server, monkeypatch, weights, capsys):
    publish(server, monkeypatch, weights[1], digest="f" * 8)
    assert main(["weights", "fetch", "vgg16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genart: error: could not download the vgg16 weights: ")
    assert "wrong content" in err and err.count("\n") == 1


def test_fetch_uploads_to_s3(server, monkeypatch, weights):
    from localcloud import environment, moto_s3, s3_client

    name = publish(server, monkeypatch, weights[1])
    with moto_s3("weights") as env, environment(env):
        assert main(["weights", "fetch", "vgg16", "--to", "s3://weights/vgg/"]) == 0
        body = s3_client(env).get_object(Bucket="weights", Key=f"vgg/{name}")["Body"].read()
    assert body == weights[1]


def test_cli_architectures_match_the_loss_network_and_inception():
    import typing

    from genart import inception, pretrained
    from genart.cli.weights import ARCHS

    assert (*typing.get_args(vgg.Arch), inception.ARCH) == ARCHS == tuple(pretrained.PUBLISHED)


def test_inception_weights_follow_the_same_rules(server, monkeypatch, weights, capsys):
    """Fetched into the hub cache with progress, named for --inception-weights; offline with
    nothing cached, the message says where it looked and how to provide them."""
    from genart import inception

    name = publish(server, monkeypatch, weights[1], arch="inception_v3")
    assert main(["weights", "fetch", "inception_v3"]) == 0
    cached = pretrained.hub_cache_path("inception_v3")
    assert cached.name == name and cached.read_bytes() == weights[1]
    out = capsys.readouterr().out
    assert f"{name}: 100% of " in out and f"(pass --inception-weights {cached}" in out
    cached.unlink()
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with pytest.raises(pretrained.WeightsNotFound) as found:
        inception.load_inception("auto")
    message = str(found.value)
    assert str(cached) in message and "genart weights fetch inception_v3" in message
    assert "--inception-weights s3://bucket/" in message and server.requests == [name]
