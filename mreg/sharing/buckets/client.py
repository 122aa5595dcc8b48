"""One registry's keys in a bucket, through obstore, with mreg's errors.

Every call has a deadline (``http.timeout`` to connect, ten times that per request)
and a few retries; every failure becomes one :class:`~mreg.errors.RemoteError` that
names the URL and the cause (no such bucket, credentials refused, access denied,
endpoint unreachable).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import obstore
from obstore.exceptions import AlreadyExistsError, PreconditionError

from mreg._version import __version__
from mreg.errors import RemoteError
from mreg.sharing.buckets.url import BucketURL, parse_bucket_url, remote_settings
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.storage.config import Config

T = TypeVar("T")
PART_SIZE = 16 << 20
"""Bytes per part of a multipart upload (and the size above which one is used)."""
STREAM_BLOCK = 4 << 20
CONCURRENCY = max(4, 2 * (os.cpu_count() or 2))
"""Requests in flight at once. They wait on the network more than on the CPU, but each
byte is also hashed and written here: on 2 cores, 4 moved the most (measured)."""
READERS = 2 * CONCURRENCY
"""Small requests in flight at once (ref tables, HEADs): they move few bytes."""


ObjectInfo = Mapping[str, Any]
"""What a listing or HEAD says of a key: ``path``, ``size``, ``last_modified``, ``e_tag``."""


class Bucket:
    """A registry's keys under ``url``: reads, create-only and compare-and-swap writes."""

    def __init__(self, url: BucketURL, settings: Mapping[str, str], timeout: float) -> None:
        self.location = str(url)
        # GCS matches a conditional write against the object's generation, not its ETag
        self.version_key: Literal["version", "e_tag"] = "version" if url.scheme == "gs" else "e_tag"
        self.store = _open_store(url, settings, timeout)

    @classmethod
    def open(cls, location: str, config: Config | None, timeout: float, *, check: bool = True) -> Bucket:
        """The bucket a URL names, with the settings of the remote that has that URL,
        checked: a missing bucket or refused credentials fail here, with their cause.

        ``check=False`` leaves that to the caller's first request, which fails the same
        way (every failure names its cause): one round trip less.
        """
        url = parse_bucket_url(location)
        bucket = cls(url, remote_settings(config, url), timeout)
        if check:
            bucket.check()
        return bucket

    # ------------------------------------------------------------- reading

    def get(self, path: str, limit: int) -> tuple[bytes, str | None] | None:
        """A small object's bytes and version (its ETag; on GCS its generation), or None
        when it does not exist. :meth:`swap` takes that version.

        Raises:
            RemoteError: the object is larger than ``limit`` bytes, or the call failed.
        """
        result = self._call(lambda: obstore.get(self.store, path), path, missing=None)
        if result is None:
            return None
        meta = result.meta
        if meta["size"] > limit:
            raise RemoteError(f"{self.location}/{path}: {meta['size']} bytes, more than the {limit} allowed")
        data = self._call(lambda: bytes(result.bytes()), path)
        if len(data) != meta["size"]:
            raise RemoteError(f"{self.location}/{path}: received {len(data)} of {meta['size']} bytes")
        return data, meta.get(self.version_key)

    def stream(self, path: str) -> tuple[Iterator[bytes], int] | None:
        """A large object's bytes in blocks, and its size; None when it does not exist."""
        result = self._call(lambda: obstore.get(self.store, path), path, missing=None)
        if result is None:
            return None
        size = int(result.meta["size"])

        def blocks() -> Iterator[bytes]:
            received = 0
            chunks = result.stream(min_chunk_size=STREAM_BLOCK)
            while True:
                block = self._call(lambda: next(chunks, None), path)
                if block is None:
                    break
                received += len(block)
                if received > size:
                    raise RemoteError(f"{self.location}/{path}: more bytes than the {size} announced")
                yield memoryview(block)  # type: ignore[misc]
            if received != size:
                raise RemoteError(f"{self.location}/{path}: body truncated at {received} of {size} bytes")

        return blocks(), size

    def head_bytes(self, path: str, length: int) -> bytes | None:
        """An object's first ``length`` bytes (all of it when shorter), or None when it does not exist."""
        info = self.head(path)
        if info is None:
            return None
        end = min(length, int(info["size"]))
        if end == 0:
            return b""
        return bytes(self._call(lambda: obstore.get_range(self.store, path, start=0, end=end), path))

    def head(self, path: str) -> ObjectInfo | None:
        """What the service knows of a key, or None when it does not exist."""
        meta: ObjectInfo | None = self._call(lambda: obstore.head(self.store, path), path, missing=None)
        return meta

    def list(self, prefix: str, after: str | None = None) -> Iterator[ObjectInfo]:
        """Every key under ``prefix`` (relative to the registry), in no promised order;
        with ``after``, only the keys that sort after it (S3 asks the service for those only)."""
        batches = self._call(lambda: obstore.list(self.store, prefix, offset=after, chunk_size=1000), prefix)
        while True:
            batch = self._call(lambda: next(batches, None), prefix)
            if batch is None:
                return
            yield from batch

    def check(self) -> None:
        """Fail now, with a clear cause, if the bucket cannot be read (missing, credentials refused, denied).

        A GET, not a listing: its error body names the cause, where a HEAD's has none.
        """
        self.get("info/models", 64 << 20)

    # ------------------------------------------------------------- writing

    def create(self, path: str, data: bytes) -> bool:
        """Write a new object unless the key exists (``If-None-Match: *``); True if written."""
        try:
            self._call(lambda: obstore.put(self.store, path, data, mode="create", use_multipart=False), path, raising=(AlreadyExistsError,))
        except AlreadyExistsError:
            return False
        return True

    def upload(self, path: str, blocks: Iterable[bytes]) -> None:
        """Write a large object as a multipart upload, completed only if ``blocks`` ends
        without an error (a verifier raising midway aborts it: nothing appears)."""
        failures: list[BaseException] = []

        def guarded() -> Iterator[bytes]:
            try:
                yield from blocks
            except BaseException as exc:  # obstore wraps it: keep the original for the caller
                failures.append(exc)
                raise

        try:
            self._call(
                lambda: obstore.put(self.store, path, guarded(), use_multipart=True, chunk_size=PART_SIZE, max_concurrency=4),
                path,
            )
        except RemoteError:
            if failures:
                raise failures[0] from None
            raise

    def overwrite(self, path: str, data: bytes) -> None:
        """Write an object whatever is there (only to freshen identical bytes)."""
        self._call(lambda: obstore.put(self.store, path, data, use_multipart=False), path)

    def swap(self, path: str, data: bytes, etag: str | None) -> bool:
        """Compare-and-swap: write if the object still has the version ``etag`` that
        :meth:`get` gave (None: if it is absent).

        Returns False when another writer got there first (412, or the key now exists).
        """
        mode: Any = "create" if etag is None else {self.version_key: etag}
        try:
            self._call(
                lambda: obstore.put(self.store, path, data, mode=mode, use_multipart=False),
                path,
                raising=(AlreadyExistsError, PreconditionError),
            )
        except (AlreadyExistsError, PreconditionError):
            return False
        return True

    def delete(self, path: str) -> None:
        """Remove a key (gc only)."""
        self._call(lambda: obstore.delete(self.store, path), path, missing=None)

    # ------------------------------------------------------------- errors

    def _call(self, call: Callable[[], T], path: str, *, missing: Any = ..., raising: tuple[type[BaseException], ...] = ()) -> T:
        """Run one obstore call; a 404 returns ``missing`` (when given), other failures raise RemoteError."""
        try:
            return call()
        except raising:
            raise
        except FileNotFoundError as exc:  # obstore's NotFoundError is one
            if missing is ... or "NoSuchBucket" in str(exc) or "ContainerNotFound" in str(exc):
                raise RemoteError(f"{self.location}: {cause(exc)}") from None
            found: T = missing
            return found
        except RemoteError:
            raise
        except Exception as exc:  # noqa: BLE001 - obstore raises builtins and its own errors alike
            raise RemoteError(f"{self.location}: {cause(exc)} (while accessing {path})") from None


_CAUSES = {
    "NoSuchBucket": "the bucket does not exist",
    "ContainerNotFound": "the container does not exist",
    "InvalidAccessKeyId": "the credentials were refused (unknown access key)",
    "SignatureDoesNotMatch": "the credentials were refused (wrong secret key)",
    "ExpiredToken": "the credentials have expired",
    "AccessDenied": "access denied (HTTP 403)",
    "AuthenticationFailed": "the credentials were refused",
    "AuthorizationFailure": "access denied (HTTP 403)",
    "AuthorizationPermissionMismatch": "access denied (HTTP 403)",
}


def cause(exc: BaseException) -> str:
    """A short, printable cause for an obstore failure."""
    text = str(exc)
    code = re.search(r"<Code>([A-Za-z]+)</Code>", text)
    if code is not None:
        if "Server failed to authenticate the request" in text:  # Azurite's code for it is AuthorizationFailure
            return _CAUSES["AuthenticationFailed"]
        return _CAUSES.get(code[1], f"the service answered {code[1]}")
    if re.search(r"token request|[Cc]redential", text):
        return "no usable credentials (" + _first_line(text, 120) + ")"
    status = re.search(r"status code: (\d{3})", text)
    if status is not None:
        number = status[1]
        return {"403": "access denied (HTTP 403)", "401": "the credentials were refused (HTTP 401)"}.get(number, f"HTTP {number}")
    if re.search(r"error sending request|[Cc]onnection refused|dns error|timed out|tcp connect", text):
        return "cannot reach the endpoint (" + _first_line(text, 120) + ")"
    return _first_line(text, 200)


def _first_line(text: str, limit: int) -> str:
    return printable(text.strip().splitlines()[0] if text.strip() else "unknown error", limit)


# ------------------------------------------------------------------ opening


def store_options(url: BucketURL, settings: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, Any]:
    """The obstore configuration for ``url``: settings from the config and the provider's files.

    Credentials are left to obstore's reading of the standard environment variables,
    except that for S3 the AWS profile files are read when no key is in the environment.
    """
    config: dict[str, Any] = {}
    endpoint = settings.get("endpoint")
    if url.scheme == "s3":
        if endpoint:
            config["endpoint"] = endpoint
        if settings.get("region"):
            config["region"] = settings["region"]
        if "AWS_ACCESS_KEY_ID" not in environ:
            config.update(aws_profile(environ))
        if "region" not in config and not (environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")):
            config["region"] = aws_profile_region(environ) or "us-east-1"
    elif url.scheme == "gs":
        if endpoint:
            config["base_url"] = endpoint
    elif endpoint:
        config["endpoint"] = endpoint
    return config


def allow_http(settings: Mapping[str, str], environ: Mapping[str, str]) -> bool:
    """Plain http only when asked: ``AWS_ALLOW_HTTP=true`` or ``remote.NAME.allow-http = true``."""
    values = (settings.get("allow-http", ""), environ.get("AWS_ALLOW_HTTP", ""), environ.get("AZURE_ALLOW_HTTP", ""))
    return any(value.strip().lower() in ("1", "true", "yes") for value in values)


def aws_profile(environ: Mapping[str, str]) -> dict[str, str]:
    """Keys of the AWS profile (``AWS_PROFILE`` or ``default``) in the shared credentials file."""
    path = environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")
    section = _ini_section(path, environ.get("AWS_PROFILE", "default"))
    names = {"aws_access_key_id": "access_key_id", "aws_secret_access_key": "secret_access_key", "aws_session_token": "session_token"}
    return {names[key]: value for key, value in section.items() if key in names}


def aws_profile_region(environ: Mapping[str, str]) -> str | None:
    """The region of the AWS profile in the shared config file."""
    path = environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")
    profile = environ.get("AWS_PROFILE", "default")
    section = _ini_section(path, profile if profile == "default" else f"profile {profile}")
    return section.get("region")


def _ini_section(path: str, name: str) -> dict[str, str]:
    import configparser  # only without keys in the environment

    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError):
        return {}
    return dict(parser.items(name)) if parser.has_section(name) else {}


def _open_store(url: BucketURL, settings: Mapping[str, str], timeout: float) -> Any:
    from obstore.store import (  # start-up: obstore, only when a bucket is used
        AzureStore,
        GCSStore,
        S3Store,
    )

    environ = os.environ
    client = {
        "connect_timeout": timedelta(seconds=timeout),
        "timeout": timedelta(seconds=max(10 * timeout, 60.0)),
        "allow_http": allow_http(settings, environ),
        "user_agent": _user_agent(),
    }
    retry = {"max_retries": 2, "retry_timeout": timedelta(seconds=timeout), "backoff": {"init_backoff": timedelta(milliseconds=100)}}
    kinds: dict[str, Any] = {"s3": S3Store, "gs": GCSStore, "az": AzureStore}  # obstore types each config; mreg builds them as plain dicts
    try:
        return kinds[url.scheme](
            url.bucket,
            prefix=url.prefix or None,
            config=store_options(url, settings, environ),
            client_options=client,
            retry_config=retry,
        )
    except Exception as exc:  # noqa: BLE001 - a configuration obstore refuses
        raise RemoteError(f"{url}: cannot open the bucket: {cause(exc)}") from None


def _user_agent() -> str:
    return f"mreg/{__version__}"


FRESHEN_AFTER = timedelta(hours=12)
"""Reuse an object only if it was written more recently than this (half gc's default grace)."""


def age(info: Mapping[str, Any], now: datetime) -> timedelta:
    """How long ago a key was last written."""
    modified = info.get("last_modified")
    return now - modified if isinstance(modified, datetime) else timedelta(0)
