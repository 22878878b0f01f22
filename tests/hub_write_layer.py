"""A Hub-compatible HTTP server for the test suite: Olah (offline) for reads plus a write layer.

Run as a script (``python tests/hub_write_layer.py --port P --repos-dir D``); `tests/local_hub.py`
starts and stops it. One FastAPI app serves everything on one port:

* Olah 0.5.4's own router, mounted last, serves the reads from bare git repositories laid out as
  Olah's local mirrors (``D/<datasets|models|spaces>/<org>/<name>``, Olah ``mirrors_path=[D]``).
* Guard routes registered before it check repo / revision / path with git and answer the Hub's
  errors (Olah offline answers 401 RepoNotFound or 500 for a missing revision or file), then hand
  the request to Olah's handler functions. Some of Olah's answers are completed on the way out:
  HTTP Range on ``resolve`` (HfFileSystem reads parquet footers by range; Olah always sends the
  whole file), ``authors[].user`` on ``commits`` (huggingface_hub requires it), ``private``.
* Write routes (create/delete repo, preupload, LFS batch + upload, commit, branch, tag,
  validate-yaml, whoami) write into the bare repos with git plumbing: blobs with
  ``git hash-object``, a temporary index, ``git commit-tree`` with a fixed author, and
  ``git update-ref <new> <old>`` so a concurrent change is refused rather than overwritten.
  LFS objects live in ``<repo>/.git/lfs/objects/aa/bb/<sha256>``: that is where Olah's reader
  (written for non-bare checkouts) looks, ``working_dir/.git/lfs/objects``, and for a bare repo
  GitPython's working_dir is the repo itself. ``.git`` there is a plain folder, not a git dir,
  so git's repository discovery still sees a bare repo.

Test switches: the file ``D/.fail_commits`` makes the commit endpoint answer 500, ``D/.fail_tags``
the tag-creation endpoint.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import types
from typing import Any
from urllib.parse import unquote

import yaml
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

logger = logging.getLogger(__name__)

USER = "tester"
DEFAULT_TOKEN = "hf_local_test_token"
REPO_TYPES = {"model": "models", "dataset": "datasets", "space": "spaces"}
FAIL_COMMITS_FLAG = ".fail_commits"
FAIL_TAGS_FLAG = ".fail_tags"
# huggingface_hub sends files above this size (or binary ones) through LFS on the real Hub.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
_AUTHOR_ENV = {
    "GIT_AUTHOR_NAME": USER,
    "GIT_AUTHOR_EMAIL": f"{USER}@localhost",
    "GIT_COMMITTER_NAME": USER,
    "GIT_COMMITTER_EMAIL": f"{USER}@localhost",
}
# The start of the Hub's default .gitattributes for new repos (the LFS patterns that matter here).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.gz", "*.h5", "*.joblib", "*.lz4",
        "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
        "*.pth", "*.safetensors", "*.tar", "*.tflite", "*.zip", "*.zst", "*.png", "*.jpg",
        "*.jpeg", "*.gif", "*.webp", "*.mp3", "*.wav",
    )
)
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_ZERO_SHA = "0" * 40
_lock = threading.RLock()  # one writer at a time: every write is a read-modify-write of refs


class HubError(Exception):
    """An error answered to the client the way the Hub answers it."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def response(self) -> JSONResponse:
        headers = {"x-error-message": self.message}
        if self.code:
            headers["x-error-code"] = self.code
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def repo_not_found() -> HubError:
    # The Hub answers 401 + RepoNotFound for a repo that does not exist or that the caller may not see.
    return HubError(401, "Repository not found", "RepoNotFound")


def revision_not_found(rev: str) -> HubError:
    return HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")


def entry_not_found(path: str, rev: str) -> HubError:
    return HubError(404, f"{path} does not exist on \"{rev}\"", "EntryNotFound")


# --------------------------------------------------------------------------------------------
# git helpers
# --------------------------------------------------------------------------------------------


def git(repo: str, *args: str, input: bytes | None = None, env: dict | None = None, check: bool = True) -> str:
    full_env = {**os.environ, "GIT_DIR": repo, **(env or {})}
    proc = subprocess.run(["git", *args], input=input, capture_output=True, env=full_env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def rev_parse(repo: str, rev: str) -> str | None:
    """Full sha of the commit `rev` names (branch, tag, full or short sha), or None."""
    if not rev or rev.startswith("-"):
        return None
    out = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False)
    return out.strip() or None


def ls_tree_entry(repo: str, commit: str, path: str) -> tuple[str, str, str] | None:
    """(mode, type, sha) of `path` at `commit`, or None when it does not exist."""
    path = path.strip("/")
    if not path:
        return ("040000", "tree", git(repo, "rev-parse", f"{commit}^{{tree}}").strip())
    out = git(repo, "ls-tree", "-z", commit, "--", path, check=False)
    for record in out.split("\0"):
        if not record:
            continue
        meta, name = record.split("\t", 1)
        if name == path:
            mode, kind, sha = meta.split()
            return mode, kind, sha
    return None


def lfs_dir(repo: str) -> str:
    return os.path.join(repo, ".git", "lfs", "objects")


def lfs_path(repo: str, oid: str) -> str:
    return os.path.join(lfs_dir(repo), oid[:2], oid[2:4], oid)


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


_POINTER = re.compile(rb"^version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize ([0-9]+)\n$")


def blob_oid_for_preupload(repo: str, sha: str) -> str:
    """The oid huggingface_hub compares with its local one: sha256 for LFS pointers, else the blob sha."""
    data = git_blob(repo, sha)
    match = _POINTER.match(data)
    return match.group(1).decode() if match else sha


def git_blob(repo: str, sha: str) -> bytes:
    full_env = {**os.environ, "GIT_DIR": repo}
    return subprocess.run(["git", "cat-file", "blob", sha], capture_output=True, env=full_env, check=True).stdout


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------


class Store:
    """Bare git repositories under `root`, laid out as Olah local mirrors."""

    def __init__(self, root: str, token: str) -> None:
        self.root = root
        self.token = token

    def path(self, type_plural: str, repo_id: str) -> str:
        if type_plural not in REPO_TYPES.values():
            raise HubError(404, f"Unknown repo type {type_plural!r}; expected one of {sorted(REPO_TYPES.values())}")
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(_SEGMENT.match(p) for p in parts) or any(p.endswith(".git") for p in parts):
            raise HubError(400, f"Invalid repo id {repo_id!r}: expected '<namespace>/<name>'")
        return os.path.join(self.root, type_plural, *parts)

    def existing(self, type_plural: str, repo_id: str) -> str:
        path = self.path(type_plural, repo_id)
        if not os.path.isdir(os.path.join(path, "objects")):
            raise repo_not_found()
        return path

    def is_private(self, repo: str) -> bool:
        return git(repo, "config", "--get", "hub.private", check=False).strip() == "true"

    def create(self, type_plural: str, repo_id: str, *, private: bool) -> str:
        path = self.path(type_plural, repo_id)
        with _lock:
            if os.path.exists(path):
                raise HubError(409, f"You already created this {type_plural[:-1]} repo: {repo_id}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=".creating-", dir=os.path.dirname(path))
            subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", tmp], check=True, capture_output=True)
            git(tmp, "config", "hub.private", "true" if private else "false")
            os.makedirs(lfs_dir(tmp), exist_ok=True)
            # The Hub starts every repo with one commit holding .gitattributes.
            blob = git(tmp, "hash-object", "-w", "--stdin", input=DEFAULT_GITATTRIBUTES.encode()).strip()
            index = os.path.join(tmp, "create.index")
            env = {"GIT_INDEX_FILE": index}
            git(tmp, "update-index", "--add", "--cacheinfo", f"100644,{blob},.gitattributes", env=env)
            tree = git(tmp, "write-tree", env=env).strip()
            os.remove(index)
            sha = git(tmp, "commit-tree", tree, "-m", "initial commit", env=_AUTHOR_ENV).strip()
            git(tmp, "update-ref", "refs/heads/main", sha, _ZERO_SHA)
            os.rename(tmp, path)
        return path

    def delete(self, type_plural: str, repo_id: str) -> None:
        path = self.existing(type_plural, repo_id)
        with _lock:
            shutil.rmtree(path)

    def upload_mode(self, repo: str, rev: str, path: str, size: int, sample: bytes) -> str:
        if size >= LFS_SIZE_THRESHOLD or b"\0" in sample:
            return "lfs"
        head = rev_parse(repo, rev)
        attributes = ""
        if head is not None and ls_tree_entry(repo, head, ".gitattributes") is not None:
            attributes = git(repo, "show", f"{head}:.gitattributes", check=False)
        name = path.rsplit("/", 1)[-1]
        for line in attributes.splitlines():
            fields = line.split()
            if len(fields) >= 2 and "filter=lfs" in fields[1:]:
                pattern = fields[0]
                if fnmatch.fnmatch(path if "/" in pattern else name, pattern.lstrip("/")):
                    return "lfs"
        return "regular"

    def commit(self, repo: str, branch: str, lines: list[dict[str, Any]]) -> str:
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit payload must be the header")
        header = lines[0].get("value") or {}
        message = header.get("summary") or "Commit"
        if header.get("description"):
            message += "\n\n" + header["description"]
        with _lock:
            head = rev_parse(repo, f"refs/heads/{branch}")
            if head is None:
                raise revision_not_found(branch)
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent.lower()):
                raise HubError(
                    412,
                    f"A commit has happened since {parent} on {branch} (now {head}). Please refresh and try again.",
                )
            fd, index = tempfile.mkstemp(prefix="commit-", suffix=".index", dir=repo)
            os.close(fd)
            os.remove(index)  # git wants to create the index itself
            env = {"GIT_INDEX_FILE": index}
            try:
                git(repo, "read-tree", head, env=env)
                for line in lines[1:]:
                    self._apply(repo, line, env, branch)
                tree = git(repo, "write-tree", env=env).strip()
            finally:
                if os.path.exists(index):
                    os.remove(index)
            sha = git(repo, "commit-tree", tree, "-p", head, "-m", message, env=_AUTHOR_ENV).strip()
            git(repo, "update-ref", f"refs/heads/{branch}", sha, head)
        return sha

    def _apply(self, repo: str, line: dict[str, Any], env: dict, branch: str) -> None:
        key, value = line.get("key"), line.get("value") or {}
        path = _clean_repo_path(value.get("path", ""))
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}; expected 'base64'")
            content = base64.b64decode(value.get("content", ""))
            blob = git(repo, "hash-object", "-w", "--stdin", input=content).strip()
            git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        elif key == "lfsFile":
            oid = str(value.get("oid", "")).lower()
            stored = lfs_path(repo, oid)
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not os.path.exists(stored):
                raise HubError(422, f"LFS object {oid} for {path} was not uploaded; upload it through the LFS batch API first")
            blob = git(repo, "hash-object", "-w", "--stdin", input=lfs_pointer(oid, os.path.getsize(stored))).strip()
            git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        elif key == "deletedFile":
            if not git(repo, "ls-files", "-z", "--", path, env=env).split("\0")[0] == path:
                raise HubError(404, f"A file with this name doesn't exist: {path} on {branch}", "EntryNotFound")
            _remove_from_index(repo, [path], env)
        elif key == "deletedFolder":
            files = [f for f in git(repo, "ls-files", "-z", "--", path.rstrip("/") + "/", env=env).split("\0") if f]
            if not files:
                raise HubError(404, f"A folder with this name doesn't exist: {path} on {branch}", "EntryNotFound")
            _remove_from_index(repo, files, env)
        else:
            raise HubError(400, f"Unknown commit operation {key!r}; expected file, lfsFile, deletedFile or deletedFolder")

    def create_ref(self, repo: str, ref: str, target_rev: str, *, kind: str) -> None:
        with _lock:
            target = rev_parse(repo, target_rev)
            if target is None:
                raise revision_not_found(target_rev)
            if subprocess.run(["git", "check-ref-format", ref], capture_output=True).returncode != 0:
                raise HubError(400, f"Invalid {kind} name {ref.split('/', 2)[-1]!r}")
            if rev_parse(repo, ref) is not None:
                raise HubError(409, f"{kind.capitalize()} {ref.split('/', 2)[-1]} already exists")
            git(repo, "update-ref", ref, target, _ZERO_SHA)

    def delete_ref(self, repo: str, ref: str, *, kind: str) -> None:
        with _lock:
            if ref not in git(repo, "for-each-ref", "--format=%(refname)", ref).split():
                raise revision_not_found(ref.split("/", 2)[-1])
            git(repo, "update-ref", "-d", ref)


def _remove_from_index(repo: str, paths: list[str], env: dict) -> None:
    # `update-index --force-remove` needs a work tree; mode 0 through --index-info does not.
    records = b"".join(f"0 {_ZERO_SHA}\t{p}".encode() + b"\0" for p in paths)
    git(repo, "update-index", "-z", "--index-info", input=records, env=env)


def _clean_repo_path(path: str) -> str:
    parts = [p for p in str(path).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or parts[0] == ".git":
        raise HubError(400, f"Invalid path in repo {path!r}")
    return "/".join(parts)


# --------------------------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------------------------


def build_app(repos_dir: str, *, token: str = DEFAULT_TOKEN) -> FastAPI:
    """The Hub-compatible app: write layer and read guards in front of Olah's router.

    Args:
        repos_dir: folder of the bare repositories (created when missing).
        token: the one user token accepted for writes and private reads.

    Returns:
        A FastAPI app to run with uvicorn.
    """
    from olah.configs import OlahConfig
    from olah.server_api_routes import (
        commits_proxy_common,
        meta_proxy_common,
        pathsinfo_proxy_common,
        refs_proxy_common,
        tree_proxy_common,
    )
    from olah.server_file_routes import file_get_common, file_head_common
    from olah.server_routes import router as olah_router

    os.makedirs(repos_dir, exist_ok=True)
    store = Store(repos_dir, token)
    app = FastAPI()
    config = OlahConfig()
    config.offline = True
    config.mirrors_path = [repos_dir]
    config.repos_path = os.path.join(repos_dir, ".olah-cache")
    config.metadata_cache_ttl = 0
    app.state.app_settings = types.SimpleNamespace(config=config)
    app.state.logger = logging.getLogger("olah")

    @app.exception_handler(HubError)
    async def _hub_error(_: Request, exc: HubError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(Exception)
    async def _server_error(_: Request, exc: Exception) -> JSONResponse:
        # Say what broke in the answer too: a client-side test failure then shows the cause.
        logger.exception("local Hub error")
        return HubError(500, f"Internal error in the local test Hub: {type(exc).__name__}: {exc}").response()

    def bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def require_token(request: Request) -> None:
        given = bearer(request)
        if given != store.token:
            raise HubError(401, "Invalid credentials in Authorization header" if given else "Authorization header is required")

    def readable(request: Request, type_plural: str, repo_id: str) -> str:
        repo = store.existing(type_plural, repo_id)
        if store.is_private(repo) and bearer(request) != store.token:
            raise repo_not_found()
        return repo

    def commit_of(repo: str, rev: str) -> str:
        sha = rev_parse(repo, rev)
        if sha is None:
            raise revision_not_found(rev)
        return sha

    # ---------------------------------------------------------------- health, whoami, yaml

    @app.get("/_local_hub/health")
    async def health() -> dict:
        return {"ok": True, "pid": os.getpid()}

    @app.get("/api/whoami-v2")
    async def whoami(request: Request) -> dict:
        require_token(request)
        return {
            "type": "user",
            "id": "0" * 24,
            "name": USER,
            "fullname": "Local Test User",
            "email": f"{USER}@localhost",
            "emailVerified": True,
            "isPro": False,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local-test", "role": "write"}},
        }

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request) -> JSONResponse:
        content = (await request.json()).get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*$", content, flags=re.S | re.M)
        if match:
            try:
                data = yaml.safe_load(match.group(1))
            except yaml.YAMLError as exc:
                return JSONResponse({"errors": [{"message": f"Invalid YAML: {exc}"}]}, status_code=400)
            if data is not None and not isinstance(data, dict):
                return JSONResponse({"errors": [{"message": "YAML metadata must be a mapping"}]}, status_code=400)
        return JSONResponse({"errors": [], "warnings": []})

    # ---------------------------------------------------------------- repos

    @app.post("/api/repos/create")
    async def create_repo(request: Request) -> JSONResponse:
        require_token(request)
        body = await request.json()
        type_plural = REPO_TYPES.get(body.get("type") or "model")
        if type_plural is None:
            raise HubError(400, f"Invalid repo type {body.get('type')!r}; expected one of {sorted(REPO_TYPES)}")
        repo_id = f"{body.get('organization') or USER}/{body.get('name', '')}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        url = _repo_url(request, type_plural, repo_id)
        try:
            await run_in_threadpool(store.create, type_plural, repo_id, private=private)
        except HubError as exc:
            if exc.status == 409:
                return JSONResponse({"error": exc.message, "url": url}, status_code=409, headers={"x-error-message": exc.message})
            raise
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    @app.delete("/api/repos/delete")
    async def delete_repo(request: Request) -> Response:
        require_token(request)
        body = await request.json()
        type_plural = REPO_TYPES.get(body.get("type") or "model", "models")
        await run_in_threadpool(store.delete, type_plural, f"{body.get('organization') or USER}/{body.get('name', '')}")
        return Response(status_code=200)

    @app.put("/api/{type_plural}/{org}/{name}/settings")
    async def repo_settings(type_plural: str, org: str, name: str, request: Request) -> dict:
        require_token(request)
        repo = store.existing(type_plural, f"{org}/{name}")
        body = await request.json()
        private = body.get("private")
        if body.get("visibility") is not None:
            private = body["visibility"] == "private"
        if private is not None:
            git(repo, "config", "hub.private", "true" if private else "false")
        return {"private": store.is_private(repo)}

    # ---------------------------------------------------------------- uploads

    @app.post("/api/{type_plural}/{org}/{name}/preupload/{rev:path}")
    async def preupload(type_plural: str, org: str, name: str, rev: str, request: Request) -> dict:
        require_token(request)
        repo = store.existing(type_plural, f"{org}/{name}")
        body = await request.json()
        head = commit_of(repo, rev)

        def answer() -> dict:
            files = []
            for item in body.get("files", []):
                path = _clean_repo_path(item.get("path", ""))
                sample = base64.b64decode(item.get("sample", ""))
                entry = ls_tree_entry(repo, head, path)
                oid = blob_oid_for_preupload(repo, entry[2]) if entry and entry[1] == "blob" else None
                files.append({
                    "path": item["path"],
                    "uploadMode": store.upload_mode(repo, head, path, int(item.get("size", 0)), sample),
                    "shouldIgnore": False,
                    "oid": oid,
                })
            return {"files": files, "commitOid": head}

        return await run_in_threadpool(answer)

    @app.post("/{prefix}/{org}/{name_git}/info/lfs/objects/batch")
    @app.post("/{org}/{name_git}/info/lfs/objects/batch")
    async def lfs_batch(org: str, name_git: str, request: Request, prefix: str = "models") -> JSONResponse:
        require_token(request)
        if not name_git.endswith(".git"):
            raise HubError(404, "Not found")
        repo_id = f"{org}/{name_git[:-4]}"
        repo = store.existing(prefix, repo_id)
        body = await request.json()
        if body.get("operation") not in ("upload", "download"):
            raise HubError(400, f"Unknown LFS operation {body.get('operation')!r}")
        base = str(request.base_url).rstrip("/")
        objects = []
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid", "")).lower(), int(obj.get("size", 0))
            entry: dict[str, Any] = {"oid": oid, "size": size}
            href = f"{base}/_local_hub/lfs/{prefix}/{repo_id}/{oid}"
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                entry["error"] = {"code": 422, "message": f"Invalid oid {oid!r}"}
            elif body["operation"] == "upload":
                if not os.path.exists(lfs_path(repo, oid)):
                    entry["authenticated"] = True
                    entry["actions"] = {
                        "upload": {"href": href, "header": {}},
                        "verify": {"href": f"{href}/verify", "header": {}},
                    }
            elif os.path.exists(lfs_path(repo, oid)):
                entry["actions"] = {"download": {"href": href, "header": {}}}
            else:
                entry["error"] = {"code": 404, "message": "Object does not exist"}
            objects.append(entry)
        return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                            media_type="application/vnd.git-lfs+json")

    @app.put("/_local_hub/lfs/{type_plural}/{org}/{name}/{oid}")
    async def lfs_upload(type_plural: str, org: str, name: str, oid: str, request: Request) -> Response:
        repo = store.existing(type_plural, f"{org}/{name}")
        data = await request.body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match oid {oid}")
        target = lfs_path(repo, oid)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
        return Response(status_code=200)

    @app.post("/_local_hub/lfs/{type_plural}/{org}/{name}/{oid}/verify")
    async def lfs_verify(type_plural: str, org: str, name: str, oid: str, request: Request) -> dict:
        require_token(request)
        repo = store.existing(type_plural, f"{org}/{name}")
        body = await request.json()
        target = lfs_path(repo, oid)
        if not os.path.exists(target) or os.path.getsize(target) != int(body.get("size", -1)):
            raise HubError(404, f"LFS object {oid} is missing or has the wrong size")
        return {"ok": True}

    @app.get("/_local_hub/lfs/{type_plural}/{org}/{name}/{oid}")
    async def lfs_download(type_plural: str, org: str, name: str, oid: str, request: Request) -> Response:
        repo = readable(request, type_plural, f"{org}/{name}")
        target = lfs_path(repo, oid)
        if not os.path.exists(target):
            raise HubError(404, "Object does not exist")
        with open(target, "rb") as fh:
            return Response(fh.read(), media_type="application/octet-stream")

    # ---------------------------------------------------------------- commit, branches, tags

    @app.post("/api/{type_plural}/{org}/{name}/commit/{rev:path}")
    async def commit(type_plural: str, org: str, name: str, rev: str, request: Request) -> JSONResponse:
        require_token(request)
        repo = store.existing(type_plural, f"{org}/{name}")
        if os.path.exists(os.path.join(store.root, FAIL_COMMITS_FLAG)):
            raise HubError(500, "Internal Error - the local Hub was told to refuse commits (fail_commits)")
        if request.query_params.get("create_pr") in ("1", "true", "True"):
            raise HubError(400, "Pull requests are not supported by the local test Hub")
        raw = await request.body()
        try:
            lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        except ValueError as exc:
            raise HubError(400, f"Commit payload is not newline-delimited JSON: {exc}") from exc
        sha = await run_in_threadpool(store.commit, repo, rev, lines)
        return JSONResponse({
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{_repo_url(request, type_plural, f'{org}/{name}')}/commit/{sha}",
        })

    @app.post("/api/{type_plural}/{org}/{name}/branch/{branch:path}")
    async def create_branch(type_plural: str, org: str, name: str, branch: str, request: Request) -> dict:
        require_token(request)
        repo = store.existing(type_plural, f"{org}/{name}")
        body = await _json_or_empty(request)
        await run_in_threadpool(store.create_ref, repo, f"refs/heads/{branch}", body.get("startingPoint") or "main", kind="branch")
        return {}

    @app.delete("/api/{type_plural}/{org}/{name}/branch/{branch:path}")
    async def delete_branch(type_plural: str, org: str, name: str, branch: str, request: Request) -> dict:
        require_token(request)
        repo = store.existing(type_plural, f"{org}/{name}")
        if branch == "main":
            raise HubError(403, "Cannot delete the default branch main")
        await run_in_threadpool(store.delete_ref, repo, f"refs/heads/{branch}", kind="branch")
        return {}

    @app.post("/api/{type_plural}/{org}/{name}/tag/{rev:path}")
    async def create_tag(type_plural: str, org: str, name: str, rev: str, request: Request) -> dict:
        require_token(request)
        repo = store.existing(type_plural, f"{org}/{name}")
        body = await _json_or_empty(request)
        tag = body.get("tag")
        if os.path.exists(os.path.join(store.root, FAIL_TAGS_FLAG)):
            raise HubError(500, "Internal Error - the local Hub was told to refuse tags (fail_tags)")
        if not tag:
            raise HubError(400, "Missing 'tag' in the request body")
        await run_in_threadpool(store.create_ref, repo, f"refs/tags/{tag}", rev, kind="tag")
        return {}

    @app.delete("/api/{type_plural}/{org}/{name}/tag/{tag:path}")
    async def delete_tag(type_plural: str, org: str, name: str, tag: str, request: Request) -> dict:
        require_token(request)
        repo = store.existing(type_plural, f"{org}/{name}")
        await run_in_threadpool(store.delete_ref, repo, f"refs/tags/{tag}", kind="tag")
        return {}

    # ---------------------------------------------------------------- read guards in front of Olah

    def olah_json(response: Response) -> Any:
        if response.status_code != 200 or not hasattr(response, "body"):
            raise HubError(500, f"Olah answered {response.status_code} for a repository that exists")
        return json.loads(response.body)

    @app.get("/api/{type_plural}/{org}/{name}/refs")
    async def refs(type_plural: str, org: str, name: str, request: Request, include_prs: bool = False) -> Response:
        readable(request, type_plural, f"{org}/{name}")
        return await refs_proxy_common(app, type_plural, org, name, include_prs, request.headers.get("authorization"))

    async def meta(request: Request, type_plural: str, org: str, name: str, rev: str) -> Response:
        repo = readable(request, type_plural, f"{org}/{name}")
        sha = commit_of(repo, rev)
        response = await meta_proxy_common(app, type_plural, org, name, sha, request.method.lower(),
                                           request.headers.get("authorization"))
        data = olah_json(response)
        data["private"] = store.is_private(repo)
        return JSONResponse(data)

    @app.get("/api/{type_plural}/{org}/{name}")
    @app.head("/api/{type_plural}/{org}/{name}")
    async def repo_info(type_plural: str, org: str, name: str, request: Request) -> Response:
        # Olah offline finds "the latest commit" in its download cache, never in a local mirror.
        return await meta(request, type_plural, org, name, "main")

    @app.get("/api/{type_plural}/{org}/{name}/revision/{rev:path}")
    @app.head("/api/{type_plural}/{org}/{name}/revision/{rev:path}")
    async def repo_info_at(type_plural: str, org: str, name: str, rev: str, request: Request) -> Response:
        return await meta(request, type_plural, org, name, rev)

    @app.get("/api/{type_plural}/{org}/{name}/tree/{rest:path}")
    async def tree(type_plural: str, org: str, name: str, rest: str, request: Request,
                   recursive: bool = False, expand: bool = False) -> Response:
        repo = readable(request, type_plural, f"{org}/{name}")
        rev, path = rev_and_path(request, 6)  # /api/<type>/<org>/<name>/tree/<rev>/<path>
        sha = commit_of(repo, rev)
        entry = ls_tree_entry(repo, sha, path)
        if entry is None or entry[1] != "tree":
            raise entry_not_found(path, rev)
        # Olah's own `expand` looks up the last commit from HEAD, not from the requested revision
        # (a 500 for a file that exists only at a tag), so expansion is done here.
        response = await tree_proxy_common(app, type_plural, org, name, sha, path.strip("/"), recursive, False,
                                           "get", request.headers.get("authorization"))
        items = olah_json(response)
        if expand:
            await run_in_threadpool(add_last_commits, repo, sha, items)
        return JSONResponse(items)

    @app.post("/api/{type_plural}/{org}/{name}/paths-info/{rev:path}")
    async def paths_info(type_plural: str, org: str, name: str, rev: str, request: Request) -> Response:
        repo = readable(request, type_plural, f"{org}/{name}")
        sha = commit_of(repo, rev)
        form = await request.form()
        paths = [str(p) for p in form.getlist("paths")]
        if not paths:
            return JSONResponse([])
        response = await pathsinfo_proxy_common(app, type_plural, org, name, sha, paths, "post",
                                                request.headers.get("authorization"))
        items = olah_json(response)
        if str(form.get("expand", "")).lower() in ("1", "true"):
            await run_in_threadpool(add_last_commits, repo, sha, items)
        return JSONResponse(items)

    @app.get("/api/{type_plural}/{org}/{name}/commits/{rev:path}")
    async def commits(type_plural: str, org: str, name: str, rev: str, request: Request) -> Response:
        repo = readable(request, type_plural, f"{org}/{name}")
        sha = commit_of(repo, rev)
        response = await commits_proxy_common(app, type_plural, org, name, sha, "get",
                                              request.headers.get("authorization"))
        items = olah_json(response)
        for item in items:
            # Olah puts the whole message in `title` and authors as {"name"}; the Hub splits the
            # message and names authors by `user` (huggingface_hub reads author["user"]).
            title, _, rest = item.get("title", "").partition("\n")
            item["title"], item["message"] = title.strip(), rest.strip()
            item["authors"] = [{"user": a.get("name"), "avatar": a.get("avatar")} for a in item.get("authors", [])]
        return JSONResponse(items)

    async def resolve(request: Request, type_plural: str, org: str, name: str, skip: int) -> Response:
        repo = readable(request, type_plural, f"{org}/{name}")
        rev, path = rev_and_path(request, skip)
        sha = commit_of(repo, rev)
        entry = ls_tree_entry(repo, sha, path)
        if entry is None or entry[1] != "blob":
            raise entry_not_found(path, rev)
        pointer = _POINTER.match(git_blob(repo, entry[2])) if 120 < _blob_size(repo, entry[2]) < 150 else None
        if pointer and not os.path.exists(lfs_path(repo, pointer.group(1).decode())):
            raise HubError(404, f"LFS object for {path} is missing from the local Hub", "EntryNotFound")
        headers = {"x-repo-commit": sha}
        if pointer:
            headers["x-linked-etag"] = f'"{pointer.group(1).decode()}"'
            headers["x-linked-size"] = pointer.group(2).decode()
        if request.method == "HEAD":
            head = await file_head_common(app, type_plural, org, name, sha, path, request)
            head.headers.update(headers)
            head.headers["etag"] = f'"{head.headers["etag"].strip(chr(34))}"'
            head.headers["accept-ranges"] = "bytes"
            return head
        streamed = await file_get_common(app, type_plural, org, name, sha, path, request)
        chunks = [chunk async for chunk in streamed.body_iterator]
        body = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
        etag = pointer.group(1).decode() if pointer else entry[2]
        headers.update({"etag": f'"{etag}"', "accept-ranges": "bytes"})
        return _ranged(body, request.headers.get("range"), headers)

    @app.get("/{type_plural}/{org}/{name}/resolve/{rest:path}")
    @app.head("/{type_plural}/{org}/{name}/resolve/{rest:path}")
    async def resolve_typed(type_plural: str, org: str, name: str, rest: str, request: Request) -> Response:
        return await resolve(request, type_plural, org, name, 5)  # /<type>/<org>/<name>/resolve/<rev>/

    @app.get("/{org}/{name}/resolve/{rest:path}")
    @app.head("/{org}/{name}/resolve/{rest:path}")
    async def resolve_model(org: str, name: str, rest: str, request: Request) -> Response:
        return await resolve(request, "models", org, name, 4)  # /<org>/<name>/resolve/<rev>/

    app.include_router(olah_router)
    return app


def rev_and_path(request: Request, skip: int) -> tuple[str, str]:
    """Revision and file path of a URL whose revision is path segment number `skip`.

    Read from the raw URL: a revision with a slash arrives as one %2F-quoted segment, which the
    decoded path no longer tells apart from the file path.
    """
    parts = request.scope.get("raw_path", request.url.path.encode()).decode().split("/")
    return unquote(parts[skip]) if len(parts) > skip else "", unquote("/".join(parts[skip + 1:]))


def add_last_commits(repo: str, commit: str, items: list[dict[str, Any]]) -> None:
    """Give each tree entry the Hub's `lastCommit` (last commit touching it, from `commit` back)."""
    for item in items:
        out = git(repo, "log", "-1", "--format=%H%x00%s%x00%cd", "--date=format-local:%Y-%m-%dT%H:%M:%S.000Z",
                  commit, "--", item["path"], env={"TZ": "UTC"}).strip()
        if out:
            oid, title, date = out.split("\0")
            item["lastCommit"] = {"id": oid, "title": title, "date": date}


def _blob_size(repo: str, sha: str) -> int:
    return int(git(repo, "cat-file", "-s", sha).strip())


def _ranged(body: bytes, range_header: str | None, headers: dict[str, str]) -> Response:
    """Answer a `Range: bytes=a-b` (or `a-`, `-n`) request with 206, else the whole body."""
    size = len(body)
    if not range_header:
        return Response(body, headers=headers, media_type="application/octet-stream")
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header)
    if not match or (match.group(1) == "" and match.group(2) == ""):
        return Response(body, headers=headers, media_type="application/octet-stream")
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), (min(int(last), size - 1) if last else size - 1)
    if start >= size or start > end:
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
    headers = {**headers, "content-range": f"bytes {start}-{end}/{size}"}
    return Response(body[start:end + 1], status_code=206, headers=headers, media_type="application/octet-stream")


def _repo_url(request: Request, type_plural: str, repo_id: str) -> str:
    base = str(request.base_url).rstrip("/")
    return f"{base}/{repo_id}" if type_plural == "models" else f"{base}/{type_plural}/{repo_id}"


async def _json_or_empty(request: Request) -> dict:
    raw = await request.body()
    return json.loads(raw) if raw.strip() else {}


def _exit_with_parent(parent_pid: int) -> None:
    import time

    while True:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        time.sleep(1.0)


def main() -> None:
    """Run the server (used by tests/local_hub.py as a subprocess)."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--repos-dir", required=True)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process is gone (a killed test run leaves no server behind)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.parent_pid:
        threading.Thread(target=_exit_with_parent, args=(args.parent_pid,), daemon=True).start()
    uvicorn.run(build_app(args.repos_dir, token=args.token), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
