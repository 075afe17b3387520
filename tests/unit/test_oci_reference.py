"""Image references: Docker's normalisation table and its refusals."""

from __future__ import annotations

import pytest

from hypr_engine.errors import InvalidArgument
from hypr_engine.oci.reference import Reference, normalize_name, parse_reference

D = "sha256:" + "a" * 64

NORMALISED = [
    # input, full form, familiar form
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("user/app/sub:v2", "docker.io/user/app/sub:v2", "user/app/sub:v2"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/x:1", "localhost:5000/x:1", "localhost:5000/x:1"),
    ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"),
    ("[::1]:5000/foo:bar", "[::1]:5000/foo:bar", "[::1]:5000/foo:bar"),
    ("ghcr.io/org/img:v1.2.3-rc_1", "ghcr.io/org/img:v1.2.3-rc_1", "ghcr.io/org/img:v1.2.3-rc_1"),
    ("Registry.Example.com/x", "Registry.Example.com/x:latest", "Registry.Example.com/x:latest"),
    ("foo:5000", "docker.io/library/foo:5000", "foo:5000"),  # no '/': a tag, not a port
    ("ab-c__d/e--f", "docker.io/ab-c__d/e--f:latest", "ab-c__d/e--f:latest"),
    ("a.b/c", "a.b/c:latest", "a.b/c:latest"),  # a '.' makes the first component a registry
    ("busybox:Latest", "docker.io/library/busybox:Latest", "busybox:Latest"),  # tags may be uppercase
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"busybox:1@{D}"),
    (f"localhost:5000/x@{D}", f"localhost:5000/x@{D}", f"localhost:5000/x@{D}"),
]


@pytest.mark.parametrize("text,full,familiar", NORMALISED)
def test_normalisation(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert normalize_name(text) == full
    # Normalisation is idempotent: both forms parse back to the same reference.
    assert parse_reference(full) == ref
    assert parse_reference(familiar) == ref


def test_fields() -> None:
    ref = parse_reference(f"localhost:5000/team/app:1.0@{D}")
    assert ref == Reference("localhost:5000", "team/app", "1.0", D)
    assert ref.repository == "localhost:5000/team/app"
    assert ref.familiar_name() == "localhost:5000/team/app"
    assert parse_reference(f"busybox@{D}").tag is None  # a digest reference gets no default tag
    assert parse_reference("busybox", default_tag=None).tag is None
    assert str(parse_reference("busybox").with_tag("2")) == "docker.io/library/busybox:2"
    assert parse_reference("busybox").with_digest(D).digest == D


ERRORS = [
    ("", "empty"),
    ("Busybox", "must be lowercase"),
    ("library/BusyBox:1", "must be lowercase"),
    ("busybox:", "invalid reference format"),
    ("busybox:bad/tag", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid tag"),
    ("busybox:-x", "invalid tag"),
    (":tag", "invalid reference format"),
    ("-busybox", "invalid repository name"),
    ("busybox/", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("a..b/c", "invalid reference format"),
    ("http://busybox", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("busybox@sha256:" + "A" * 64, "lowercase hex"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("busybox@sha256:" + "a" * 63, "needs 64 lowercase hex digits"),
    ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
    ("x/" + "a" * 260, "not be more than 255 characters"),
    ("busy box", "invalid reference format"),
]


@pytest.mark.parametrize("text,message", ERRORS)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_reference(text)
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_with_tag_validates() -> None:
    with pytest.raises(InvalidArgument):
        parse_reference("busybox").with_tag("no/slash")
