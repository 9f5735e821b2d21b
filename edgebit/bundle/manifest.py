"""``manifest.json`` as one typed record, validated when a bundle is opened.

Every command reads the manifest through :class:`Manifest`, so a bundle with a missing field, a wrong type or a file
path that leaves the bundle gets one clear error from one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from edgebit.errors import EdgebitError

FORMAT_VERSION = 3  # 3: the bundle carries its loader and C/C++ runtime (loader/)
HEX = set("0123456789abcdef")
NAME_MAX = 255  # bytes in one file name (Linux); a longer one cannot be in the bundle


class ManifestError(EdgebitError):
    """A manifest.json that is not what this edgebit writes."""


def _require(record: dict, key: str, kind: type | tuple, where: str):
    if not isinstance(record, dict) or key not in record:
        raise ManifestError(f"{where} has no {key!r}; export the bundle again")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ManifestError(f"{where}: {key!r} must be a {names}, not {type(value).__name__}; export the bundle again")
    return value


def _rounding_noise(value, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1e6:
        raise ManifestError(f"{where}: model 'rounding_noise' must be a number >= 0; export the bundle again")
    return float(value)


def check_relative_path(path: str, where: str) -> str:
    """``path`` if it is a plain relative path inside the bundle (no ``..``, not absolute), else an error."""
    parts = PurePosixPath(path).parts
    if (not path or path.startswith("/") or "\\" in path or "\0" in path or any(p in ("..", ".", "") for p in parts)
            or any(len(p.encode("utf-8", "surrogatepass")) > NAME_MAX for p in parts)):
        raise ManifestError(f"{where}: {path[:100]!r} is not a path inside the bundle; export the bundle again")
    return path


@dataclass(frozen=True)
class ModelRecord:
    family: str
    config: dict
    max_seq_len: int
    layout: str | None = None
    # {"precision": "fp32" | "int8" | "q4", "reference_perplexity": {"fp32": ..., "<precision>": ...}} (edgebit.models.head)
    head: dict = field(default_factory=lambda: {"precision": "fp32"})
    # {"precision": "fp16" | "fp32", "reference_perplexity": {...}} (edgebit.models.kv_cache); None: no KV cache, or
    # a bundle from before the choice existed (float32)
    kv_cache: dict | None = None
    # How far the host reference's logits move under one-ulp input changes (edgebit.validate.agreement); 0: not
    # measured (older bundles)
    rounding_noise: float = 0.0

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])


@dataclass(frozen=True)
class TargetRecord:
    name: str
    triple: str
    debian_arch: str
    loader: str  # file name of the dynamic loader in loader/ (ld-linux-aarch64.so.1, ...)
    features: list = field(default_factory=list)
    tvm: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    model: ModelRecord
    target: TargetRecord
    runtimes: dict  # name -> {"version": ...}
    files: dict  # relative path -> sha256 hex
    built_on: str = ""
    edgebit_version: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data, where: str = "manifest.json") -> "Manifest":
        if not isinstance(data, dict):
            raise ManifestError(f"{where} is not a JSON object; export the bundle again")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ManifestError(f"{where}: bundle format {version} is not supported (this edgebit reads "
                                f"{FORMAT_VERSION}); export it again with this edgebit")
        model = _require(data, "model", dict, where)
        target = _require(data, "target", dict, where)
        config = _require(model, "config", dict, f"{where} model")
        vocab = _require(config, "vocab_size", int, f"{where} model.config")
        max_seq_len = _require(model, "max_seq_len", int, f"{where} model")
        if vocab < 1 or max_seq_len < 1:
            raise ManifestError(f"{where}: vocab_size and max_seq_len must be positive; export the bundle again")
        runtimes = _require(data, "runtimes", dict, where)
        if not runtimes:
            raise ManifestError(f"{where} lists no runtimes; export the bundle again")
        for name, info in runtimes.items():
            if not isinstance(info, dict):
                raise ManifestError(f"{where}: runtime {name!r} must be an object; export the bundle again")
            check_relative_path(name, f"{where} runtimes")
        files = _require(data, "files", dict, where)
        for path, digest in files.items():
            check_relative_path(path, f"{where} files")
            if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= HEX:
                raise ManifestError(f"{where}: the sha256 of {path!r} is not 64 hex digits; export the bundle again")
        layout = model.get("layout")
        head = model.get("head", {"precision": "fp32"})
        if not isinstance(head, dict) or not isinstance(head.get("precision"), str):
            raise ManifestError(f"{where}: model 'head' must be an object with a 'precision'; export the bundle again")
        kv_cache = model.get("kv_cache")
        if kv_cache is not None and (not isinstance(kv_cache, dict) or not isinstance(kv_cache.get("precision"), str)):
            raise ManifestError(f"{where}: model 'kv_cache' must be an object with a 'precision'; export the bundle "
                                "again")
        features, tvm = target.get("features") or [], target.get("tvm") or {}
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ManifestError(f"{where}: target 'features' must be a list of strings; export the bundle again")
        if not isinstance(tvm, dict):
            raise ManifestError(f"{where}: target 'tvm' must be an object; export the bundle again")
        return cls(
            model=ModelRecord(_require(model, "family", str, f"{where} model"), config, max_seq_len,
                              layout if isinstance(layout, str) else None, dict(head),
                              dict(kv_cache) if kv_cache is not None else None,
                              _rounding_noise(model.get("rounding_noise", 0.0), where)),
            target=TargetRecord(_require(target, "name", str, f"{where} target"),
                                _require(target, "triple", str, f"{where} target"),
                                _require(target, "debian_arch", str, f"{where} target"),
                                check_relative_path(_require(target, "loader", str, f"{where} target"),
                                                    f"{where} target.loader"),
                                list(features), dict(tvm)),
            runtimes=dict(runtimes), files=dict(files), built_on=str(data.get("built_on", "")),
            edgebit_version=str(data.get("edgebit_version", "")), format_version=version)
