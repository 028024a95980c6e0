"""A small OCI distribution-spec client: blobs, manifests, indexes, with auth and retries.

The project assembles and pushes image indexes itself, so multi-arch tags work
where buildx is absent. Anonymous, basic and bearer-token registries are
supported; credentials are never logged or put in an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from builder.core.errors import BuilderError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])


class RegistryError(BuilderError):
    pass


class AuthError(RegistryError):
    pass


class DigestMismatch(RegistryError):
    """A registry served other bytes than the digest it was asked for: nothing read is used."""


DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def credentials_for(host: str, environ=os.environ) -> tuple[str, str] | None:
    """REGISTRY_USERNAME/REGISTRY_PASSWORD, else the engine's config.json `auths` entry."""
    if environ.get("REGISTRY_USERNAME"):
        return environ["REGISTRY_USERNAME"], environ.get("REGISTRY_PASSWORD", "")
    cfg = Path(environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(cfg.read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"):
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in ("localhost", "[::1]") or name.startswith("127.")


@dataclass
class Registry:
    host: str
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    retries: int = 4
    backoff: float = 0.5
    timeout: float = 120
    bytes_uploaded: int = 0
    blobs_mounted: int = 0
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)
    _session: requests.Session | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        # Plain HTTP only for loopback: the local registry binds 127.0.0.1.
        return f"{'http' if is_loopback(self.host) else 'https'}://{self.host}/v2"

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            retry = Retry(total=self.retries, connect=self.retries, read=self.retries, status=self.retries,
                          backoff_factor=self.backoff, status_forcelist=(500, 502, 503, 504),
                          allowed_methods=None, raise_on_status=False)
            s = requests.Session()
            s.mount("http://", HTTPAdapter(max_retries=retry))
            s.mount("https://", HTTPAdapter(max_retries=retry))
            self._session = s
        return self._session

    def _request(self, method: str, url: str, repo: str | None, scope_action: str = "pull", **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        scope = f"repository:{repo}:{scope_action}" if repo else ""
        for attempt in range(2):
            auth = self._auth_header(scope)
            try:
                resp = self.session.request(method, url, headers={**headers, **auth}, timeout=self.timeout, **kw)
            except requests.RequestException as e:
                raise RegistryError(f"registry {self.host}: {method} failed: {_reason(e)}") from None
            if resp.status_code == 403:
                # Authenticated but not allowed: a token or account without write access to this repository.
                raise AuthError(
                    f"registry {self.host} denied {method} {url.split('/v2', 1)[-1].split('?')[0]} (HTTP 403): "
                    f"the credentials in use have no {'push' if 'push' in scope_action else 'pull'} permission on "
                    f"{repo or 'it'}; grant it or use other credentials")
            if resp.status_code != 401:
                return resp
            if attempt == 0 and self._answer_challenge(resp.headers.get("WWW-Authenticate", ""), scope):
                continue
            raise AuthError(
                f"registry {self.host} refused {'the credentials' if self.credentials else 'anonymous access'} "
                f"(HTTP 401 on {method} {url.split('/v2', 1)[-1]}); set REGISTRY_USERNAME/REGISTRY_PASSWORD "
                "or `docker login` to that registry")
        raise AssertionError("unreachable")

    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._tokens.get("*basic*") and self.credentials:
            raw = base64.b64encode(":".join(self.credentials).encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        return {}

    def _answer_challenge(self, challenge: str, scope: str) -> bool:
        kind, _, params = challenge.partition(" ")
        if kind.lower() == "basic":
            if not self.credentials:
                return False
            self._tokens["*basic*"] = "1"
            return True
        if kind.lower() != "bearer":
            return False
        p = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {"service": p.get("service", "")}
        if scope:
            query["scope"] = scope
        try:
            resp = self.session.get(p["realm"], params=query, timeout=self.timeout,
                                    auth=self.credentials if self.credentials else None)
        except (KeyError, requests.RequestException) as e:
            raise RegistryError(f"registry {self.host}: token request failed: {_reason(e)}") from None
        if resp.status_code in (401, 403):
            return False
        body = resp.json()
        self._tokens[scope] = body.get("token") or body.get("access_token", "")
        return True

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self._request("HEAD", f"{self.base}/{repo}/blobs/{digest}", repo)
        return resp.status_code == 200

    def upload_blob(self, repo: str, data: bytes, digest: str | None = None, mount_from: tuple[str, ...] = ()) -> str:
        """Monolithic upload (POST then PUT), skipped when the registry already has the blob.

        `mount_from` names repositories of the same registry that may hold it
        (a base image's): a cross-repository mount links it without sending it.
        """
        digest = digest or sha256_digest(data)
        if self.blob_exists(repo, digest):
            return digest
        for source in mount_from:
            resp = self._mount(repo, digest, source)
            if resp.status_code == 201:
                return digest
            if resp.status_code == 202:  # not mountable here: the registry opened a normal upload instead
                return self._finish_upload(resp, repo, data, digest)
        return self.put_blob(repo, data, digest)

    def put_blob(self, repo: str, data: bytes, digest: str) -> str:
        """Monolithic upload (POST then PUT) of a blob the caller already knows the registry lacks."""
        resp = self._request("POST", f"{self.base}/{repo}/blobs/uploads/", repo, "pull,push")
        return self._finish_upload(resp, repo, data, digest)

    def _mount(self, repo: str, digest: str, source: str) -> requests.Response:
        resp = self._request("POST", f"{self.base}/{repo}/blobs/uploads/", repo, "pull,push",
                             params={"mount": digest, "from": source})
        if resp.status_code == 201:
            self.blobs_mounted += 1
        return resp

    def mount_blob(self, repo: str, digest: str, sources: tuple[str, ...]) -> bool:
        """Link a blob from another repository of this registry without having its bytes at hand."""
        for source in sources:
            resp = self._mount(repo, digest, source)
            if resp.status_code == 201:
                return True
            if resp.status_code == 202 and resp.headers.get("Location"):
                # The registry opened an upload instead: cancel it, the caller sends the bytes.
                location = resp.headers["Location"]
                if location.startswith("/"):
                    location = self.base[: -len("/v2")] + location
                self._request("DELETE", location, repo, "pull,push")
        return False

    def _finish_upload(self, resp: requests.Response, repo: str, data: bytes, digest: str) -> str:
        _expect(resp, 202, self.host, f"start upload to {repo}")
        location = resp.headers["Location"]
        if location.startswith("/"):
            location = self.base[: -len("/v2")] + location
        sep = "&" if "?" in location else "?"
        resp = self._request("PUT", f"{location}{sep}digest={digest}", repo, "pull,push", data=data,
                             headers={"Content-Type": "application/octet-stream"})
        _expect(resp, 201, self.host, f"upload blob {digest[:19]} to {repo}")
        self.bytes_uploaded += len(data)
        return digest

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        return self.put_manifest_subject(repo, ref, body, media_type)[0]

    def put_manifest_subject(self, repo: str, ref: str, body: bytes, media_type: str) -> tuple[str, bool]:
        """(digest, whether the registry processed the manifest's `subject`): a registry that serves the
        referrers API says so with an OCI-Subject header (OCI distribution spec 1.1)."""
        resp = self._request("PUT", f"{self.base}/{repo}/manifests/{ref}", repo, "pull,push", data=body,
                             headers={"Content-Type": media_type})
        _expect(resp, 201, self.host, f"put manifest {repo}:{ref}")
        self.bytes_uploaded += len(body)
        return resp.headers.get("Docker-Content-Digest") or sha256_digest(body), "OCI-Subject" in resp.headers

    def get_referrers(self, repo: str, digest: str) -> dict | None:
        """The referrers API's index for `digest`, or None when the registry does not serve that API."""
        resp = self._request("GET", f"{self.base}/{repo}/referrers/{digest}", repo,
                             headers={"Accept": OCI_INDEX})
        if resp.status_code != 200:
            return None
        try:
            doc = resp.json()
        except ValueError:
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("manifests"), list) else None

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str] | None:
        """(body, media type, digest); a manifest asked for by digest is checked against it, byte for byte (a
        tag names no bytes: its digest is the one computed here, which every later read by digest is held to)."""
        if ":" in ref:
            self._checkable(repo, ref)
        resp = self._request("GET", f"{self.base}/{repo}/manifests/{ref}", repo, headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            return None
        _expect(resp, 200, self.host, f"get manifest {repo}:{ref}")
        return resp.content, resp.headers.get("Content-Type", ""), self._checked(repo, ref, resp.content, "manifest")

    def list_tags(self, repo: str) -> set[str]:
        """Every tag of `repo` (none for a repository that does not exist yet), following the Link pages."""
        tags: set[str] = set()
        url = f"{self.base}/{repo}/tags/list"
        while url:
            resp = self._request("GET", url, repo)
            if resp.status_code == 404:
                return tags
            _expect(resp, 200, self.host, f"list the tags of {repo}")
            tags.update((resp.json() or {}).get("tags") or [])
            following = resp.links.get("next", {}).get("url")
            url = requests.compat.urljoin(url, following) if following else ""
        return tags

    def get_blob(self, repo: str, digest: str) -> bytes:
        """The blob's bytes, checked against `digest`: a registry that alters content is caught here, for every
        caller, as go-containerregistry's verifying readers do."""
        self._checkable(repo, digest)
        resp = self._request("GET", f"{self.base}/{repo}/blobs/{digest}", repo)
        _expect(resp, 200, self.host, f"get blob {digest[:19]} from {repo}")
        self._checked(repo, digest, resp.content, "blob")
        return resp.content

    def _checked(self, repo: str, ref: str, data: bytes, what: str) -> str:
        got = sha256_digest(data)
        if ref.startswith("sha256:") and got != ref:
            raise DigestMismatch(f"registry {self.host} served {what} {repo}@{ref} as other bytes ({got}): "
                                 "nothing read from it is used; the registry, or something between it and this "
                                 "machine, alters content")
        return got

    @staticmethod
    def _checkable(repo: str, ref: str) -> None:
        if not DIGEST_RE.match(ref):
            raise RegistryError(f"{repo}@{ref}: not a sha256 digest this client can check; refusing to read it")


def _expect(resp: requests.Response, status: int, host: str, what: str) -> None:
    if resp.status_code != status:
        raise RegistryError(f"registry {host}: {what} answered HTTP {resp.status_code}: {resp.text[:200]}")


def _reason(e: Exception) -> str:
    text = str(e)
    for marker in ("Connection refused", "Connection reset", "timed out", "Name or service not known",
                   "Max retries exceeded"):
        if marker in text:
            return marker
    return text[:160]
