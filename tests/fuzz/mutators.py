"""Seeded mutators for the files edgebit reads: JSON documents (structure-aware), raw bytes, and safetensors files
(the 8-byte header length, the JSON header and the data region).

Every mutator takes a :class:`random.Random`, so one case is reproduced by its seed alone.
"""

from __future__ import annotations

import copy
import json
import random
import struct

# Values that often break readers: wrong types, boundaries, huge and negative numbers, odd floats, paths that leave
# a directory, unicode, nesting.
INTERESTING = [
    None, True, False, 0, 1, -1, 2, 3, 4, 7, 8, 255, 256, 65535, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 + 1,
    2 ** 63 - 1, 2 ** 63, 2 ** 64, -2 ** 63, 10 ** 30, 10 ** 400, -(10 ** 30), 0.0, -0.0, 0.5, 1.5, -1.5, 1e-300,
    1e308, -1e308, float("nan"), float("inf"), float("-inf"), "", "0", "1", "-1", "12", "1e9", "abc", "true", "null",
    "NaN", "../../etc/hostname", "/etc/hostname", "..", ".", "a/../b", "a//b", "a\\b", "\x00", "nul\x00byte",
    "\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9", "\u202e\u200b", "\ud83d\ude00", "x" * 5000, [], [0], [1, 2], [None],
    ["a", "b"], [[[]]], {}, {"a": 1}, {"__float__": "Infinity"}, {"__float__": "oops"}, {"": None},
]
# Keys worth adding: what edgebit's readers look up, so a mutation can switch a layout or reach a rarely-set field.
KNOWN_KEYS = [
    "edgebit_format", "family", "weight_encoding", "config", "model_type", "vocab_size", "hidden_size",
    "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act",
    "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters", "rope_type", "max_position_embeddings",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "quantization_config", "quant_method", "linear_class",
    "use_rms_norm", "num_heads", "state_size", "expand", "n_groups", "conv_kernel", "layer_norm_epsilon",
    "use_conv_bias", "use_bias", "time_step_limit", "d_model", "n_layer", "ssm_cfg", "layer", "d_state", "headdim",
    "ngroups", "d_conv", "conv_bias", "bias", "tie_embeddings", "format_version", "model", "target", "runtimes",
    "files", "max_seq_len", "layout", "name", "triple", "debian_arch", "loader", "features", "tvm", "built_on",
    "edgebit_version", "version", "dtype", "shape", "data_offsets", "__metadata__",
]
# Values of the string enums edgebit dispatches on, so mutations reach every branch rather than only the first.
KNOWN_STRINGS = [
    "bitnet", "bimamba", "llama", "mamba2", "gpt2", "planar2", "base3", "planar1", "relu2", "silu", "gelu",
    "bitlinear", "autobitlinear", "default", "linear", "yarn", "Mamba2", "Mamba1", "tvm", "onnx", "executorch",
    "ort-portable", "x86_64", "arm64", "F32", "F16", "BF16", "U8", "I8",
]


def _containers(value, path=()):
    """(path, container) for every dict and list inside ``value``, itself included."""
    if isinstance(value, (dict, list)):
        yield path, value
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            yield from _containers(child, path + (key,))


def _slots(value, max_depth: int | None = None):
    """(container, key) for every value inside ``value`` (not the root), down to ``max_depth`` levels."""
    for path, container in _containers(value):
        if max_depth is not None and len(path) >= max_depth:
            continue
        keys = list(container) if isinstance(container, dict) else range(len(container))
        for key in keys:
            yield container, key


class Raw:
    """JSON text spliced verbatim into a document by :func:`dumps` (nesting too deep for Python to build)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:20]!r}...)"


def deep_nesting(rng: random.Random) -> Raw:
    depth = rng.choice([50, 500, 5000, 100000])
    open_, close = rng.choice([("[", "]"), ('{"a":', "}")])
    return Raw(open_ * depth + rng.choice(["1", "[]", "{}"]) + close * depth)


def _tweaks(number) -> list:
    """Values near ``number``, the same number as another JSON type, and the number wrapped."""
    near = [number + 1, number - 1, number * 2, -number, number * 1000003, str(number), [number], {"value": number}]
    if isinstance(number, int):
        near += [number // 2, float(number) if abs(number) < 2 ** 1000 else 1e308]
    elif number == number and abs(number) < 1e300:
        near += [number / 2, int(number)]
    return near


def random_value(rng: random.Random, like=None):
    """A replacement value: an interesting constant, a tweak of ``like``, a known enum string or nested garbage."""
    roll = rng.random()
    if isinstance(like, (int, float)) and not isinstance(like, bool) and roll < 0.35:
        return rng.choice(_tweaks(like))
    if roll < 0.75:
        return copy.deepcopy(rng.choice(INTERESTING))
    if roll < 0.88:
        return rng.choice(KNOWN_STRINGS)
    if roll < 0.97:
        return {rng.choice(KNOWN_KEYS): copy.deepcopy(rng.choice(INTERESTING)) for _ in range(rng.randint(0, 3))}
    return deep_nesting(rng)


def mutate_json_value(document, rng: random.Random, rounds: int | None = None, shallow: float = 0.0):
    """A structure-aware mutation of a parsed JSON ``document`` (a deep copy; the input is left alone).
    ``shallow``: the probability that a round picks among the top three levels only (for documents whose bulk is
    one long table, like a tokenizer's vocabulary)."""
    document = copy.deepcopy(document)
    for _ in range(rounds or rng.choice([1, 1, 1, 2, 2, 3, 5])):
        slots = list(_slots(document, 3 if rng.random() < shallow else None))
        containers = [c for _, c in _containers(document)]
        op = rng.random()
        if not slots or op < 0.04:
            document = random_value(rng, document if not isinstance(document, (dict, list)) else None)
            if not isinstance(document, (dict, list)):
                return document
            continue
        container, key = rng.choice(slots)
        if op < 0.22:  # drop a field or element
            del container[key]
        elif op < 0.62:  # replace with a wrong / boundary value
            container[key] = random_value(rng, container[key])
        elif op < 0.72:  # add a known key somewhere
            target = rng.choice(containers)
            if isinstance(target, dict):
                target[rng.choice(KNOWN_KEYS)] = random_value(rng)
            else:
                target.insert(rng.randint(0, len(target)), random_value(rng))
        elif op < 0.80:  # swap two values
            other, other_key = rng.choice(slots)
            container[key], other[other_key] = other[other_key], container[key]
        elif op < 0.86:  # duplicate a subtree elsewhere
            other, other_key = rng.choice(slots)
            other[other_key] = copy.deepcopy(container[key])
        elif op < 0.92 and isinstance(container, dict):  # rename a key
            value = container.pop(key)
            container[rng.choice([rng.choice(KNOWN_KEYS), str(rng.choice(INTERESTING)), key.upper(), key + " "])] = value
        elif op < 0.96 and isinstance(container[key], (list, dict)):  # empty a container
            container[key] = type(container[key])()
        else:  # replace with a string variant of the same value
            container[key] = dumps(container[key], rng).decode("utf-8", "replace")
    return document


def dumps(document, rng: random.Random) -> bytes:
    """JSON text for ``document`` in one of the shapes writers produce (compact or indented, NaN allowed)."""
    raws: dict[str, str] = {}

    def placeholder(value):
        if isinstance(value, Raw):
            key = f"@@raw{len(raws)}@@"
            raws[key] = value.text
            return key
        raise TypeError(type(value).__name__)

    text = json.dumps(document, indent=rng.choice([None, 2]), sort_keys=rng.random() < 0.3,
                      ensure_ascii=rng.random() < 0.5, default=placeholder)
    for key, raw in raws.items():
        text = text.replace(json.dumps(key), raw)
    return text.encode("utf-8", "surrogatepass")


TOKENS = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"null", b"true", b"NaN", b"Infinity", b"-", b"1e999",
          b"99999999999999999999", b"9" * 5000, b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\n",
          b'"../../etc/hostname"', b"[" * 10000]


def mutate_bytes(data: bytes, rng: random.Random, rounds: int | None = None) -> bytes:
    """Byte-level mutations: flips, inserts of tokens and junk, deletions, duplications, truncation."""
    data = bytearray(data)
    for _ in range(rounds or rng.choice([1, 1, 2, 3, 8])):
        n = len(data)
        op = rng.random()
        at = rng.randint(0, n)
        if op < 0.25 and n:
            i = min(at, n - 1)
            data[i] ^= 1 << rng.randrange(8)
        elif op < 0.35 and n:
            data[min(at, n - 1)] = rng.randrange(256)
        elif op < 0.55:
            data[at:at] = rng.choice(TOKENS)
        elif op < 0.70:
            data[at:at + rng.randint(1, 64)] = b""
        elif op < 0.80:
            chunk = data[at:at + rng.randint(1, 256)]
            data[at:at] = chunk
        elif op < 0.88:
            del data[at:]
        elif op < 0.94:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        else:
            data[at:at] = rng.randbytes(1) * rng.randint(1, 4096)
    return bytes(data)


# safetensors: the dtypes the format names (some torch cannot hold), and values no reader knows.
SAFETENSORS_DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL",
                      "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", "E8M0", "f32", "X", "",
                      7, None]


def split_safetensors(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def join_safetensors(header: dict | bytes, body: bytes, rng: random.Random | None = None) -> bytes:
    text = header if isinstance(header, bytes) else dumps(header, rng or random.Random(0))
    return struct.pack("<Q", len(text)) + text + body


def _tensor_entries(header: dict) -> list[tuple[str, dict]]:
    return [(k, v) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]


def mutate_safetensors_header(header: dict, body_size: int, rng: random.Random) -> dict:
    """A safetensors-aware mutation of the parsed header: dtypes, shapes, data_offsets, names and metadata."""
    header = copy.deepcopy(header)
    entries = _tensor_entries(header)
    for _ in range(rng.choice([1, 1, 2, 3])):
        if not entries:
            break
        name, entry = rng.choice(entries)
        op = rng.random()
        if op < 0.18:
            entry["dtype"] = rng.choice(SAFETENSORS_DTYPES)
        elif op < 0.40:
            shape = entry.get("shape")
            if isinstance(shape, list) and shape and rng.random() < 0.6:
                i = rng.randrange(len(shape))
                shape[i] = rng.choice([0, -1, 1, 2 ** 31, 2 ** 63, 2 ** 64, 10 ** 30, "3", 3.0, None,
                                       shape[i] + 1 if isinstance(shape[i], int) else 1,
                                       shape[i] * 2 if isinstance(shape[i], int) else 2])
            else:
                entry["shape"] = rng.choice([[], [0], [1], [-1], [2 ** 32, 2 ** 32], None, "1", [1] * 64,
                                             (shape or []) + [1] if isinstance(shape, list) else [1],
                                             list(reversed(shape)) if isinstance(shape, list) else [2]])
        elif op < 0.70:
            offsets = entry.get("data_offsets")
            begin, end = offsets if isinstance(offsets, list) and len(offsets) == 2 else (0, 0)
            begin = begin if isinstance(begin, int) else 0
            end = end if isinstance(end, int) else 0
            entry["data_offsets"] = rng.choice([
                [end, begin], [begin, end + 1], [begin, end - 1], [begin + 1, end + 1], [0, end], [0, body_size],
                [body_size, body_size], [body_size, body_size + 4], [begin, 2 ** 63], [2 ** 64 - 4, 2 ** 64],
                [-4, end], [begin], [begin, end, 0], None, [str(begin), end], [float(begin), end],
                [2 ** 64 + begin, 2 ** 64 + end]])
            if rng.random() < 0.3:  # overlap another tensor
                other_name, other = rng.choice(entries)
                entry["data_offsets"] = copy.deepcopy(other.get("data_offsets"))
        elif op < 0.80:
            new = rng.choice(["", "__metadata__", name + ".x", name.replace("0", "1"), "\x00", "a" * 300,
                              rng.choice(entries)[0]])
            header[new] = header.pop(name)
        elif op < 0.88:
            header["__metadata__"] = rng.choice([None, 1, [], {"format": 1}, {"format": None}, {"format": "tf"},
                                                 {"a": {"b": "c"}}, "pt"])
        elif op < 0.94:
            del header[name]
        else:
            entry[rng.choice(["dtype", "shape", "data_offsets"])] = random_value(rng)
        entries = _tensor_entries(header)
    return header


DTYPE_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "I8": 8, "U64": 64,
              "U32": 32, "U16": 16, "U8": 8, "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "C64": 64, "F4": 4,
              "F6_E2M3": 6, "F6_E3M2": 6}


def _nbytes(dtype: str, shape: list[int]) -> int | None:
    bits = DTYPE_BITS[dtype]
    for n in shape:
        bits *= n
    return bits // 8 if bits % 8 == 0 else None


def _resized(data: bytes, size: int, rng: random.Random) -> bytes:
    if not data:
        return rng.randbytes(size)
    return (data * (size // len(data) + 1))[:size]


def mutate_safetensors_tensor(header: dict, body: bytes, rng: random.Random) -> bytes | None:
    """A well-formed file whose one tensor has another dtype, shape or content (the body laid out again), so the
    mutation reaches the loaders rather than stopping at the header check. None if the header has no tensor."""
    entries = [(k, v) for k, v in _tensor_entries(header)
               if v.get("dtype") in DTYPE_BITS and isinstance(v.get("shape"), list)
               and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    if not entries:
        return None
    tensors = {name: (entry["dtype"], list(entry["shape"]), body[entry["data_offsets"][0]:entry["data_offsets"][1]])
               for name, entry in entries}
    name = rng.choice(sorted(tensors))
    dtype, shape, data = tensors[name]
    op = rng.random()
    if op < 0.4:  # another dtype, same shape (or the same bytes with the last dimension rescaled)
        new = rng.choice(sorted(DTYPE_BITS))
        if shape and rng.random() < 0.5 and (shape[-1] * DTYPE_BITS[dtype]) % DTYPE_BITS[new] == 0:
            shape = shape[:-1] + [shape[-1] * DTYPE_BITS[dtype] // DTYPE_BITS[new]]
        dtype = new
    elif op < 0.75:  # another shape of the same dtype
        numel = 1
        for n in shape:
            numel *= n
        shape = rng.choice([[], [0], [numel], [1, numel], [numel, 1], list(reversed(shape)), shape + [1], [1] + shape,
                            shape[:-1], [n + 1 for n in shape], [max(n - 1, 0) for n in shape], [0] + shape[1:],
                            [n * 2 for n in shape]])
    else:  # other content: zeros, ones, 0xff (NaN in floats), random
        fill = rng.choice([b"\x00", b"\x01", b"\xff", b"\x7f", b"\x55", None])
        size = len(data)
        data = rng.randbytes(size) if fill is None else fill * size
    size = _nbytes(dtype, shape)
    if size is None:
        shape, size = [8], _nbytes(dtype, [8])
    tensors[name] = (dtype, shape, _resized(data, size, rng))
    new_header, chunks, offset = {}, [], 0
    if "__metadata__" in header:
        new_header["__metadata__"] = header["__metadata__"]
    for key, (dt, sh, chunk) in tensors.items():
        new_header[key] = {"dtype": dt, "shape": sh, "data_offsets": [offset, offset + len(chunk)]}
        chunks.append(chunk)
        offset += len(chunk)
    return join_safetensors(json.dumps(new_header).encode(), b"".join(chunks))


LENGTH_VALUES = [0, 1, 2, 7, 8, 2 ** 31, 2 ** 32 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 100_000_001]


def mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    """One mutated safetensors file: header structure, header length, truncation, header or body bytes."""
    try:
        header, body = split_safetensors(data)
    except (ValueError, struct.error):  # already not a safetensors file: bytes only
        return mutate_bytes(data, rng)
    op = rng.random()
    if op < 0.25:
        mutated = mutate_safetensors_tensor(header, body, rng)
        if mutated is not None:
            return mutated
    if op < 0.45:
        return join_safetensors(mutate_safetensors_header(header, len(body), rng), body, rng)
    if op < 0.52:
        return join_safetensors(mutate_json_value(header, rng), body, rng)
    if op < 0.62:  # the 8-byte little-endian header length
        (length,) = struct.unpack("<Q", data[:8])
        value = rng.choice(LENGTH_VALUES + [length + 1, length - 1 if length else 0, length + 8, len(data),
                                            len(data) - 8, len(data) - 7, length * 2])
        return struct.pack("<Q", value % 2 ** 64) + data[8:]
    if op < 0.72:  # truncated
        return data[:rng.choice([0, 1, 4, 7, 8, 9, 8 + len(data) // 50, rng.randrange(len(data) + 1),
                                 len(data) - 1, len(data) - rng.randint(1, 64)])]
    if op < 0.84:  # JSON header bytes (length fixed up, or not)
        text = json.dumps(header).encode()
        mutated = mutate_bytes(text, rng)
        if rng.random() < 0.7:
            return join_safetensors(mutated, body)
        return data[:8] + mutated + body
    if op < 0.92:  # padding and trailing bytes
        text = json.dumps(header).encode() + rng.choice([b" " * 8, b"\x00" * 8, b"\t", b"\n\n", b"  x"])
        return join_safetensors(text, body + rng.choice([b"", b"\x00" * 16, b"junk"]))
    return data[:8] + data[8:9 + len(data) // 50] + mutate_bytes(data[9 + len(data) // 50:], rng)
