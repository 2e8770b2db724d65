"""A minimal Hugging Face Hub-compatible HTTP server on 127.0.0.1, for tests.

Tests must exercise the real `huggingface_hub` client (and transformers' `push_to_hub` / `from_pretrained`)
without the internet. No package on the registries serves both uploads and downloads for the current
client: `olah` is a read-only mirror that proxies huggingface.co, and the other "Hub" packages are
clients. So this module implements, in the standard library, exactly the endpoints that the client
(`huggingface_hub` 2.x) calls for the operations the project tests:

| client call                                    | endpoint                                                       |
| ---------------------------------------------- | -------------------------------------------------------------- |
| `create_repo(..., exist_ok=True)`              | `POST /api/repos/create` (409 when it exists)                  |
| `create_commit`, `upload_file`, `upload_folder`,| `POST /api/{type}s/{repo_id}/preupload/{revision}`, answered   |
| `PreTrainedModel.push_to_hub`,                 | `"uploadMode": "regular"` for every file, so the client sends  |
| `ModelCard.push_to_hub`                        | contents inline (base64) and never uses LFS or Xet; then       |
|                                                | `POST /api/{type}s/{repo_id}/commit/{revision}` (ndjson)        |
| `ModelCard.validate`, README commits           | `POST /api/validate-yaml` (a documented subset, see below)     |
| `hf_hub_download`, `from_pretrained`           | `HEAD`/`GET /[{type}s/]{repo_id}/resolve/{revision}/{path}` with |
|                                                | the `X-Repo-Commit`, `ETag` (git blob sha1) and `Content-Length` |
|                                                | headers the client checks, and `X-Error-Code` on 404s          |
| `repo_info`/`model_info`, `snapshot_download`  | `GET /api/{type}s/{repo_id}[/revision/{revision}]`             |
| `list_repo_files`/`list_repo_tree`, `snapshot_download` | `GET /api/{type}s/{repo_id}/tree/{revision}[/{path}]`  |
| `whoami`                                       | `GET /api/whoami-v2`                                           |

Revisions are the branch `main` or a full commit hash; there are no other branches, tags or pull requests
(such requests get a 501 that names the missing feature). Every request that matches no endpoint is
answered 404 and recorded in `HubEndpoint.unhandled`, so a test can assert the client called nothing
that is not implemented.

`/api/validate-yaml` is not the Hub's validator (its rules are not published as code). It checks what
can be checked offline: the front matter is a YAML mapping; `ModelCardData` accepts it; the well-known
fields have the Hub's types (`tags`, `datasets`, `metrics` lists of strings; `language`, `base_model`
strings or lists of strings; `library_name`, `pipeline_tag`, `license` strings); and `model-index`
parses with `huggingface_hub.repocard_data.model_index_to_eval_results`.

Use it as a context manager; it starts the server on a free port of 127.0.0.1, points `huggingface_hub`
and transformers at it (environment variables and the module constants they read at import time), and
restores everything on exit:

```python
from helpers.hub_server import local_hub

with local_hub() as endpoint:
    model.push_to_hub("test-user/tiny")
    same = AutoModelForCausalLM.from_pretrained("test-user/tiny")
    assert not endpoint.unhandled
```
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


DEFAULT_USER = "test-user"
DUMMY_TOKEN = "hf_local_hub_test_token"
MAIN = "main"
_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(content: bytes) -> str:
    """The git object id of a file, which the Hub sends as the ETag of a regular (non-LFS) file.

    Example:
        >>> git_blob_oid(b"")
        'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class _Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, str]  # path in repo -> blob oid
    created_at: float


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, _Commit] = field(default_factory=dict)


class _HubError(Exception):
    """An HTTP error answered with the headers `hf_raise_for_status` turns into the client's own exceptions."""

    def __init__(self, status: int, message: str, error_code: str | None = None, repo_commit: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.repo_commit = repo_commit


class HubStore:
    """Repositories, commits and file contents of the local hub; contents live in `root` by git blob oid."""

    def __init__(self, root: str):
        self.root = root
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.lock = threading.Lock()
        os.makedirs(os.path.join(root, "blobs"), exist_ok=True)

    def blob_path(self, oid: str) -> str:
        return os.path.join(self.root, "blobs", oid)

    def put_blob(self, content: bytes) -> str:
        oid = git_blob_oid(content)
        path = self.blob_path(oid)
        if not os.path.exists(path):
            with open(path + ".tmp", "wb") as f:
                f.write(content)
            os.replace(path + ".tmp", path)
        return oid

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> _Repo:
        with self.lock:
            repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private)
            # The Hub creates every repository with an initial commit holding `.gitattributes`.
            gitattributes = self.put_blob(b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
            self._add_commit(repo, parent=None, message="initial commit", files={".gitattributes": gitattributes})
            self.repos[(repo_type, repo_id)] = repo
            return repo

    def get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, f"Repository {repo_type}s/{repo_id} not found.", error_code="RepoNotFound")
        return repo

    def resolve(self, repo: _Repo, revision: str) -> _Commit:
        revision = unquote(revision)
        if revision in repo.branches:
            return repo.commits[repo.branches[revision]]
        if _COMMIT_HASH.match(revision) and revision in repo.commits:
            return repo.commits[revision]
        raise _HubError(
            404,
            f"Invalid rev id: {revision}. The local hub knows the branch 'main' and full commit hashes only.",
            error_code="RevisionNotFound",
        )

    def _add_commit(self, repo: _Repo, parent: str | None, message: str, files: dict[str, str]) -> _Commit:
        seed = json.dumps([parent, message, sorted(files.items()), time.time_ns(), len(repo.commits)])
        commit = _Commit(
            oid=hashlib.sha1(seed.encode()).hexdigest(),
            parent=parent,
            message=message,
            files=files,
            created_at=time.time(),
        )
        repo.commits[commit.oid] = commit
        repo.branches[MAIN] = commit.oid
        return commit

    def commit(self, repo: _Repo, revision: str, lines: list[dict]) -> _Commit:
        """Apply one ndjson commit payload (as `huggingface_hub._commit_api._prepare_commit_payload` writes it)."""
        if unquote(revision) != MAIN:
            raise _HubError(501, f"The local hub commits to the branch 'main' only, not to {unquote(revision)!r}.")
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "A commit payload starts with a 'header' line.")
        header = lines[0]["value"]
        with self.lock:
            head = repo.commits[repo.branches[MAIN]]
            parent_commit = header.get("parentCommit")
            if parent_commit is not None and not head.oid.startswith(parent_commit):
                raise _HubError(412, f"A commit has happened since {parent_commit}; 'main' is at {head.oid}.")
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}.")
                    files[path] = self.put_blob(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    if path not in files:
                        message = f"A file with this name doesn't exist: {path}"
                        raise _HubError(404, message, error_code="EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    files = {p: oid for p, oid in files.items() if not p.startswith(prefix)}
                else:
                    raise _HubError(
                        501,
                        f"The local hub does not support {key!r} commit operations: it answers 'regular' to every "
                        "preupload request, so the client never sends LFS or Xet files.",
                    )
            return self._add_commit(repo, parent=head.oid, message=header.get("summary", ""), files=files)


def _validate_card_metadata(content: str) -> list[str]:
    """Errors in a card's YAML front matter, by the subset of the Hub's rules described in the module docstring."""
    import yaml
    from huggingface_hub import ModelCardData
    from huggingface_hub.repocard import REGEX_YAML_BLOCK
    from huggingface_hub.repocard_data import model_index_to_eval_results

    match = REGEX_YAML_BLOCK.search(content)
    if match is None:
        return []  # the Hub accepts a card without metadata (with a warning)
    try:
        metadata = yaml.safe_load(match.group(2))
    except yaml.YAMLError as error:
        return [f"Invalid YAML in the metadata block: {error}"]
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        return ["The metadata block must be a YAML mapping."]

    def is_str_list(value) -> bool:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)

    errors = []
    for key in ("tags", "datasets", "metrics"):
        if key in metadata and not is_str_list(metadata[key]):
            errors.append(f'"{key}" must be a list of strings.')
    for key in ("language", "base_model"):
        if key in metadata and not (isinstance(metadata[key], str) or is_str_list(metadata[key])):
            errors.append(f'"{key}" must be a string or a list of strings.')
    for key in ("library_name", "pipeline_tag", "license"):
        if key in metadata and not isinstance(metadata[key], str):
            errors.append(f'"{key}" must be a string.')
    if "model-index" in metadata:
        try:
            model_index_to_eval_results(metadata["model-index"])
        except Exception as error:  # any failure to parse is a validation error, whatever the parser raised
            errors.append(f'"model-index" is malformed: {type(error).__name__}: {error}')
    if not errors:
        try:
            ModelCardData(**metadata, ignore_metadata_errors=False)
        except Exception as error:
            errors.append(f"The metadata does not load as ModelCardData: {type(error).__name__}: {error}")
    return errors


def _header_value(text: str) -> str:
    """`text` as one line of ASCII, which an HTTP header can carry."""
    lines = text.splitlines() or [""]
    return lines[0].encode("ascii", "backslashreplace").decode("ascii")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server: _HubHTTPServer

    def log_message(self, format, *args):  # the request log is kept in `HubEndpoint.requests` instead
        pass

    # -- plumbing -------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head_only: bool = False):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))  # also for HEAD: the size the GET would send
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, error: _HubError, head_only: bool = False):
        headers = {"Content-Type": "application/json", "X-Error-Message": _header_value(error.message)}
        if error.error_code:
            headers["X-Error-Code"] = error.error_code
        if error.repo_commit:
            headers["X-Repo-Commit"] = error.repo_commit
        self._send(error.status, json.dumps({"error": error.message}).encode(), headers, head_only=head_only)

    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        self.server.hub_requests.append(f"{method} {url.path}")
        body = self._body() if method in ("POST", "PUT", "DELETE") else b""
        try:
            if not self._route(method, url.path, parse_qs(url.query), body):
                self.server.hub_unhandled.append(f"{method} {url.path}")
                raise _HubError(404, f"The local hub does not implement {method} {url.path}.")
        except _HubError as error:
            self._error(error, head_only=method == "HEAD")
        except Exception as error:  # a bug or a malformed request: answer it, so the client raises with the reason
            message = f"Local hub error: {type(error).__name__}: {error}"
            self._error(_HubError(500, message), head_only=method == "HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- routes ---------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict, body: bytes) -> bool:
        store = self.server.store
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "GET" and path == "/api/whoami-v2":
            self._json(200, {"type": "user", "name": DEFAULT_USER, "fullname": "Local Hub Test User", "orgs": [],
                             "auth": {"accessToken": {"role": "write"}}})
            return True
        if method == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or DEFAULT_USER}/{payload['name']}"
            url = f"{self.server.endpoint}/{_URL_PREFIXES[repo_type]}{repo_id}"
            if (repo_type, repo_id) in store.repos:
                # With `exist_ok=True` the client reads the URL from this 409 answer, as from a 200.
                message = f"You already created this {repo_type} repo: {repo_id}"
                self._json(409, {"error": message, "url": url}, {"X-Error-Message": _header_value(message)})
            else:
                store.create_repo(repo_type, repo_id, private=payload.get("visibility") == "private")
                self._json(200, {"url": url, "name": repo_id, "id": repo_id})
            return True
        if method == "POST" and path == "/api/validate-yaml":
            errors = _validate_card_metadata(json.loads(body).get("content", ""))
            if errors:
                message = "\n".join(errors)
                self._send(400, json.dumps({"errors": [{"message": e} for e in errors]}).encode(),
                           {"Content-Type": "application/json", "X-Error-Message": _header_value(message)})
            else:
                self._json(200, {"errors": [], "warnings": []})
            return True
        if len(parts) >= 3 and parts[0] == "api" and parts[1] in _REPO_TYPES:
            return self._route_repo_api(method, _REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}" if len(parts) > 3
                                        else parts[2], parts[4:], query, body)
        if method in ("GET", "HEAD"):
            repo_type = _REPO_TYPES.get(parts[0]) if parts and parts[0] in ("datasets", "spaces") else "model"
            rest = parts[1:] if repo_type != "model" else parts
            if len(rest) >= 5 and rest[2] == "resolve":
                self._resolve(method, repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
                return True
        return False

    def _route_repo_api(self, method, repo_type, repo_id, rest, query, body) -> bool:
        store = self.server.store
        repo = store.get_repo(repo_type, repo_id)
        if method == "GET" and (not rest or (rest[0] == "revision" and len(rest) == 2)):
            commit = store.resolve(repo, rest[1] if rest else MAIN)
            self._json(200, self._repo_info(repo, commit))
            return True
        if method == "GET" and rest and rest[0] == "tree" and len(rest) >= 2:
            commit = store.resolve(repo, rest[1])
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self._json(200, self._tree(commit, "/".join(rest[2:]), recursive))
            return True
        if method == "POST" and rest and rest[0] == "preupload" and len(rest) == 2:
            if query.get("create_pr"):
                raise _HubError(501, "The local hub does not support pull requests (create_pr).")
            head = store.resolve(repo, rest[1])
            files = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": head.files.get(f["path"])}
                for f in json.loads(body)["files"]
            ]
            self._json(200, {"files": files, "commitOid": head.oid})
            return True
        if method == "POST" and rest and rest[0] == "commit" and len(rest) == 2:
            if query.get("create_pr"):
                raise _HubError(501, "The local hub does not support pull requests (create_pr).")
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            commit = store.commit(repo, rest[1], lines)
            prefix = f"{self.server.endpoint}/{_URL_PREFIXES[repo_type]}{repo_id}"
            self._json(200, {"commitUrl": f"{prefix}/commit/{commit.oid}", "commitOid": commit.oid,
                             "pullRequestUrl": None, "success": True})
            return True
        return False

    def _repo_info(self, repo: _Repo, commit: _Commit) -> dict:
        when = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.created_at))
        return {
            "_id": repo.repo_id, "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
            "sha": commit.oid, "lastModified": when, "private": repo.private, "gated": False, "disabled": False,
            "tags": [], "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    def _tree(self, commit: _Commit, folder: str, recursive: bool) -> list[dict]:
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries, folders = [], set()
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            relative = path[len(prefix):]
            if "/" in relative:
                # Folders are listed once, and in a recursive listing as well as their files.
                parts = relative.split("/")[:-1]
                for depth in range(1, len(parts) + 1 if recursive else 2):
                    folders.add(prefix + "/".join(parts[:depth]))
                if not recursive:
                    continue
            oid = commit.files[path]
            entries.append({"type": "file", "path": path, "oid": oid,
                            "size": os.path.getsize(self.server.store.blob_path(oid))})
        if folder.strip("/") and not entries and not folders:
            raise _HubError(404, f"Path {folder} not found at {commit.oid}.", error_code="EntryNotFound",
                            repo_commit=commit.oid)
        tree_oids = {f: hashlib.sha1(f.encode()).hexdigest() for f in folders}
        return [{"type": "directory", "path": f, "oid": tree_oids[f]} for f in sorted(folders)] + entries

    def _resolve(self, method: str, repo_type: str, repo_id: str, revision: str, filename: str):
        store = self.server.store
        repo = store.get_repo(repo_type, repo_id)
        commit = store.resolve(repo, revision)
        oid = commit.files.get(filename)
        if oid is None:
            raise _HubError(404, f"Entry not found: {filename}", error_code="EntryNotFound", repo_commit=commit.oid)
        with open(store.blob_path(oid), "rb") as f:
            content = f.read()
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{oid}"',
            "Accept-Ranges": "none",  # the client then downloads whole files, which is all tests need
        }
        self._send(200, content, headers, head_only=method == "HEAD")


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, store: HubStore):
        super().__init__(("127.0.0.1", 0), _Handler)  # port 0: the OS picks a free port
        self.store = store
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self.hub_requests: list[str] = []
        self.hub_unhandled: list[str] = []


class HubEndpoint(str):
    """The URL of a running local hub (a `str`), with its request log.

    Attributes:
        requests: every request served, as `"METHOD /path"`, in order.
        unhandled: the requests that matched no endpoint (answered 404).
        home: the temporary `HF_HOME` in force inside `local_hub()`; `home/hub` is the download cache.

    Example:
        >>> with local_hub() as endpoint:  # doctest: +SKIP
        ...     HfApi().create_repo("test-user/x")
        ...     assert endpoint.requests == ["POST /api/repos/create"]
    """

    requests: list[str]
    unhandled: list[str]
    home: str


def _module_patches(endpoint: str, home: str) -> list[tuple[object, str, object]]:
    """(module or object, attribute, value) for what `huggingface_hub` and transformers read at import time."""
    from huggingface_hub import constants, hf_api

    hub_cache = os.path.join(home, "hub")
    patches = [
        (constants, "ENDPOINT", endpoint),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"),
        (constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"}),
        (constants, "HF_HOME", home),
        (constants, "HF_HUB_CACHE", hub_cache),
        (constants, "HUGGINGFACE_HUB_CACHE", hub_cache),
        (constants, "default_cache_path", hub_cache),
        (constants, "HF_ASSETS_CACHE", os.path.join(home, "assets")),
        (constants, "HUGGINGFACE_ASSETS_CACHE", os.path.join(home, "assets")),
        (constants, "HF_TOKEN_PATH", os.path.join(home, "token")),
        (constants, "HF_STORED_TOKENS_PATH", os.path.join(home, "stored_tokens")),
        (constants, "HF_HUB_OFFLINE", False),
        (constants, "HF_HUB_DISABLE_TELEMETRY", True),
        # The module-level functions (`upload_file`, `create_repo`, ...) are bound to this instance,
        # whose endpoint was fixed when huggingface_hub was imported.
        (hf_api.api, "endpoint", endpoint),
    ]
    if hasattr(constants, "default_xet_cache_path"):
        patches.append((constants, "default_xet_cache_path", os.path.join(home, "xet")))
    try:
        import transformers.dynamic_module_utils as dynamic_module_utils
        import transformers.utils.hub as transformers_hub
    except ImportError:
        return patches
    modules_cache = os.path.join(home, "modules")
    # `hf_api()` caches an HfApi instance (and its endpoint) on first use: start from a fresh one.
    patches += [(transformers_hub, "_hf_api", None), (transformers_hub, "HF_MODULES_CACHE", modules_cache),
                (dynamic_module_utils, "HF_MODULES_CACHE", modules_cache)]
    return patches


@contextlib.contextmanager
def local_hub() -> Iterator[HubEndpoint]:
    """Run a local Hub on 127.0.0.1 and point `huggingface_hub` and transformers at it for the block.

    Sets `HF_ENDPOINT`, `HF_HUB_OFFLINE=0`, a temporary `HF_HOME` (so a fresh download cache), a dummy
    `HF_TOKEN`, and the `huggingface_hub.constants` read at import time; everything is restored and the
    server stopped on exit. Repositories live only as long as the block.

    Example:
        >>> from huggingface_hub import HfApi, hf_hub_download
        >>> with local_hub() as endpoint:  # doctest: +SKIP
        ...     HfApi().create_repo("test-user/demo", exist_ok=True)
        ...     HfApi().upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id="test-user/demo")
        ...     open(hf_hub_download("test-user/demo", "a.txt"), "rb").read()
        b'hello'
    """
    from huggingface_hub.utils import close_session

    workdir = tempfile.mkdtemp(prefix="icpt-local-hub-")
    home = os.path.join(workdir, "hf_home")
    os.makedirs(home)
    server = _HubHTTPServer(HubStore(os.path.join(workdir, "store")))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-hub", daemon=True
    )
    thread.start()

    environment = {
        "HF_ENDPOINT": server.endpoint,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HOME": home,
        "HF_HUB_CACHE": os.path.join(home, "hub"),
        "HF_MODULES_CACHE": os.path.join(home, "modules"),
        "HF_TOKEN": DUMMY_TOKEN,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # Never route 127.0.0.1 through a proxy configured for the internet.
        "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"])),
    }
    saved_environment = {name: os.environ.get(name) for name in environment}
    patches = _module_patches(server.endpoint, home)
    saved_attributes = [(target, name, getattr(target, name)) for target, name, _ in patches]

    endpoint = HubEndpoint(server.endpoint)
    endpoint.requests = server.hub_requests
    endpoint.unhandled = server.hub_unhandled
    endpoint.home = home
    close_session()  # pooled connections and proxy settings are per session: start a new one
    try:
        os.environ.update(environment)
        for target, name, value in patches:
            setattr(target, name, value)
        yield endpoint
    finally:
        for target, name, value in saved_attributes:
            setattr(target, name, value)
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        close_session()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        # Remote code imported from the temporary modules cache must not outlive its files.
        modules_cache = os.path.join(home, "modules")
        for name, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(modules_cache):
                del sys.modules[name]
        while modules_cache in sys.path:
            sys.path.remove(modules_cache)
        shutil.rmtree(workdir, ignore_errors=True)

