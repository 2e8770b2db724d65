"""The local Hub endpoint (tests/helpers/hub_server.py) against the real huggingface_hub client and transformers."""

import importlib.util
import os
import sys
import urllib.error
import urllib.request

import pytest
import torch
from huggingface_hub import (
    HfApi,
    ModelCard,
    constants,
    get_hf_file_metadata,
    hf_api,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from transformers import AutoModel, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from helpers.hub_server import DEFAULT_USER, git_blob_oid, local_hub


@pytest.fixture
def hub():
    with local_hub() as endpoint:
        yield endpoint


def tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def test_push_to_hub_then_from_pretrained_gives_identical_logits(hub, tmp_path):
    model = tiny_llama()
    # No namespace: the Hub puts the repo under the token's user, and push_to_hub reads it back.
    commit = model.push_to_hub("tiny-llama")
    assert commit.repo_url.repo_id == f"{DEFAULT_USER}/tiny-llama"

    pulled = AutoModelForCausalLM.from_pretrained(f"{DEFAULT_USER}/tiny-llama", cache_dir=tmp_path / "fresh").eval()

    assert f"GET /{DEFAULT_USER}/tiny-llama/resolve/{commit.oid}/model.safetensors" in hub.requests
    input_ids = torch.tensor([[1, 5, 9, 2, 33]])
    with torch.no_grad():
        assert torch.equal(model(input_ids).logits, pulled(input_ids).logits)
    assert hub.unhandled == []


def test_upload_file_and_hf_hub_download_round_trip_a_binary_file(hub):
    content = bytes(range(256)) * 40 + os.urandom(1000)  # every byte value, NULs and invalid UTF-8 included
    api = HfApi()
    api.create_repo("test-user/blobs", exist_ok=True)
    api.create_repo("test-user/blobs", exist_ok=True)  # exist_ok: the second create is a no-op
    commit = api.upload_file(path_or_fileobj=content, path_in_repo="weights/blob.bin", repo_id="test-user/blobs")

    path = hf_hub_download("test-user/blobs", "weights/blob.bin")

    with open(path, "rb") as f:
        assert f.read() == content
    # The headers the client checks: the commit, and the git blob id as ETag for a regular file.
    metadata = get_hf_file_metadata(hf_hub_url("test-user/blobs", "weights/blob.bin"))
    assert (metadata.commit_hash, metadata.etag, metadata.size) == (commit.oid, git_blob_oid(content), len(content))
    assert hub.unhandled == []


def test_snapshot_download_returns_the_uploaded_folder(hub, tmp_path):
    folder = tmp_path / "upload"
    files = {"config.json": b'{"a": 1}', "sub/deeper/data.bin": os.urandom(300), "sub/notes.txt": "é\n".encode()}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    api = HfApi()
    api.create_repo("test-user/folder", exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id="test-user/folder")
    api.upload_file(path_or_fileobj=b"second commit", path_in_repo="later.txt", repo_id="test-user/folder")

    snapshot = snapshot_download("test-user/folder", cache_dir=tmp_path / "cache")

    expected = {**files, "later.txt": b"second commit"}
    assert sorted(api.list_repo_files("test-user/folder")) == sorted([".gitattributes", *expected])
    for name, data in expected.items():
        assert (tmp_path / "cache").joinpath(snapshot, name).read_bytes() == data
    assert os.path.basename(snapshot) == api.model_info("test-user/folder").sha
    assert hub.unhandled == []


def test_model_card_pushed_after_the_model_is_the_card_read_back(hub, tmp_path):
    tiny_llama().push_to_hub("test-user/carded")
    # push_to_hub wrote transformers' own README; ours replaces it.
    card = ModelCard(
        "---\nlibrary_name: transformers\ntags:\n- icpt\n---\n\n# Carded\n\nWritten after the push.\n"
    )
    card.push_to_hub("test-user/carded")

    read_back = ModelCard.load("test-user/carded")

    assert read_back.content == card.content
    assert "POST /api/validate-yaml" in hub.requests  # ModelCard.push_to_hub validated it on the endpoint
    fresh = hf_hub_download("test-user/carded", "README.md", cache_dir=tmp_path / "fresh")
    with open(fresh, encoding="utf-8") as f:
        assert f.read() == str(card)


def test_remote_code_model_loads_from_the_hub_with_trust_remote_code(hub, tmp_path):
    # A model whose code is not importable by name: AutoModel must fetch tiny_remote.py from the repo.
    source = tmp_path / "tiny_remote.py"
    source.write_text(
        "import torch\n"
        "from transformers import PreTrainedConfig, PreTrainedModel\n\n\n"
        "class TinyRemoteConfig(PreTrainedConfig):\n"
        "    model_type = 'tiny-remote'\n"
        "    width: int = 8\n\n\n"
        "class TinyRemoteModel(PreTrainedModel):\n"
        "    config_class = TinyRemoteConfig\n\n"
        "    def __init__(self, config):\n"
        "        super().__init__(config)\n"
        "        self.proj = torch.nn.Linear(config.width, config.width)\n"
        "        self.post_init()\n\n"
        "    def forward(self, x):\n"
        "        return self.proj(x)\n"
    )
    spec = importlib.util.spec_from_file_location("tiny_remote", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_remote"] = module  # register_for_auto_class looks the class's file up by module name
    try:
        spec.loader.exec_module(module)
        module.TinyRemoteConfig.register_for_auto_class()
        module.TinyRemoteModel.register_for_auto_class("AutoModel")
        torch.manual_seed(0)
        model = module.TinyRemoteModel(module.TinyRemoteConfig())
        model.push_to_hub("test-user/tiny-remote")
    finally:
        del sys.modules["tiny_remote"]

    pulled = AutoModel.from_pretrained("test-user/tiny-remote", trust_remote_code=True)

    assert type(pulled).__module__.startswith("transformers_modules.")
    assert type(pulled).__module__.endswith(".tiny_remote")
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.equal(model(x), pulled(x))
    assert hub.unhandled == []


def test_missing_repo_file_and_revision_raise_the_clients_own_errors(hub):
    HfApi().create_repo("test-user/errors")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test-user/no-such-repo", "config.json")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("test-user/errors", "no-such-file.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("test-user/errors", ".gitattributes", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("test-user/no-such-repo")


def test_local_hub_points_the_client_at_127_0_0_1_and_restores_everything():
    before = (os.environ.get("HF_ENDPOINT"), os.environ.get("HF_TOKEN"), constants.ENDPOINT, constants.HF_HUB_CACHE,
              hf_api.api.endpoint)

    with local_hub() as endpoint:
        assert endpoint.startswith("http://127.0.0.1:")
        assert constants.ENDPOINT == os.environ["HF_ENDPOINT"] == hf_api.api.endpoint == endpoint
        assert constants.HF_HUB_CACHE.startswith(endpoint.home)
        assert HfApi().whoami()["name"] == DEFAULT_USER  # the dummy token is sent and accepted

    after = (os.environ.get("HF_ENDPOINT"), os.environ.get("HF_TOKEN"), constants.ENDPOINT, constants.HF_HUB_CACHE,
             hf_api.api.endpoint)
    assert after == before
    assert not os.path.exists(endpoint.home)
    with pytest.raises(urllib.error.URLError, match="refused"):  # the server is stopped
        urllib.request.urlopen(f"{endpoint}/api/whoami-v2", timeout=2)
