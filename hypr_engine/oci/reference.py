"""Image references, parsed and normalised exactly as Docker does.

Users type `busybox`, `localhost:5000/app:1` or `repo@sha256:...`; the engine stores and
compares the fully-qualified form (`docker.io/library/busybox:latest`) and shows the
familiar one. The grammar and the normalisation rules follow
distribution/reference (`ParseNormalizedNamed`, `TagNameOnly`, `FamiliarString`), so
the same string names the same image here as under Docker and Podman.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from hypr_engine.errors import InvalidArgument
from hypr_engine.oci.digest import validate_digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(rf"^{_TAG}$", re.ASCII)
_REFERENCE_RE = re.compile(
    rf"^((?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::({_TAG}))?(?:@({_DIGEST}))?$",
    re.ASCII,
)
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: `domain/path[:tag][@digest]`."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """Fully-qualified repository name, e.g. `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar_name(self) -> str:
        """Docker's short repository name: `busybox`, `user/app`, `localhost:5000/x`."""
        if self.domain == DEFAULT_DOMAIN:
            rest = self.path
            if rest.startswith(OFFICIAL_REPO_PREFIX) and "/" not in rest[len(OFFICIAL_REPO_PREFIX):]:
                return rest[len(OFFICIAL_REPO_PREFIX):]
            return rest
        return self.repository

    def familiar(self) -> str:
        """Docker's short form of the whole reference: `busybox:latest`, `localhost:5000/x:1`."""
        out = self.familiar_name()
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> "Reference":
        """The same repository with another tag (and no digest)."""
        if not _TAG_RE.match(tag):
            raise InvalidArgument(f"invalid tag {tag!r}: must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> "Reference":
        """The same repository pinned to a digest (the tag is kept, as Docker does)."""
        return replace(self, digest=validate_digest(digest))


def parse_reference(text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise `text` like Docker; a bare name gets `default_tag`.

    Raises InvalidArgument with a one-line reason for anything Docker would refuse.
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"invalid reference format: expected a string, got {type(text).__name__}")
    if not text:
        raise InvalidArgument("invalid reference format: empty reference")
    if _IDENTIFIER_RE.match(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(text)
    remote_name = remainder.split("@", 1)[0].split(":", 1)[0]
    if remote_name.lower() != remote_name:
        raise InvalidArgument(f"invalid reference format: repository name ({remote_name}) must be lowercase")

    full = f"{domain}/{remainder}"
    match = _REFERENCE_RE.match(full)
    if match is None:
        raise InvalidArgument(f"invalid reference format: {text!r}{_explain(text, domain, remainder)}")
    name, tag, digest = match.group(1), match.group(2), match.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"invalid reference format: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest is not None:
        validate_digest(digest, what="digest")
    path = name[len(domain) + 1:]
    if tag is None and digest is None and default_tag:
        tag = default_tag
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's splitDockerDomain: the first component is a registry only if it looks like a host."""
    first, sep, rest = name.partition("/")
    if not sep or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder.split("@", 1)[0].split(":", 1)[0]:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _explain(text: str, domain: str, remainder: str) -> str:
    """A more specific reason for a reference the grammar refused, where one can be named."""
    rest, _, digest = remainder.partition("@")
    path, colon, tag = rest.partition(":")
    if not _DOMAIN_RE.match(domain):
        return f": invalid registry host {domain!r}"
    if not path or not _PATH_RE.match(path):
        return f": invalid repository name {path!r}"
    if colon and not _TAG_RE.match(tag):
        return f": invalid tag {tag!r}"
    if "@" in remainder:
        try:
            validate_digest(digest, what="digest")
        except InvalidArgument as exc:
            return f": {exc.message}"
        return f": invalid digest {digest!r}"
    return ""


def normalize_name(text: str) -> str:
    """`parse_reference(text)` as a string: the canonical key HYPR stores images under."""
    return str(parse_reference(text))
