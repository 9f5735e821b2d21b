"""``generate --chat``: the prompt as a user message, formatted with the chat template of the model's
``tokenizer_config.json`` (the Jinja template Hugging Face tokenizers carry), rendered in Jinja's sandbox as
transformers renders it: ``messages``, ``add_generation_prompt``, ``bos_token`` / ``eos_token``, ``raise_exception``.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgebit.errors import EdgebitError

TOKENIZER_CONFIG = "tokenizer_config.json"


def _special(config: dict, key: str) -> str:
    value = config.get(key) or ""
    return value.get("content", "") if isinstance(value, dict) else str(value)


def chat_template(directory: Path) -> tuple[str, dict]:
    """The default chat template of ``directory``'s tokenizer_config.json, and the config."""
    path = Path(directory) / TOKENIZER_CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgebitError(f"{directory}: no {TOKENIZER_CONFIG}, so no chat template; drop --chat") from None
    except (OSError, ValueError) as exc:
        raise EdgebitError(f"{path}: cannot be read ({exc}); restore it from the model's original files") from None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str) or not template:
        raise EdgebitError(f"{path} has no chat template; drop --chat")
    return template, config


def chat_prompt(directory: Path, user_text: str, system: str | None = None) -> str:
    """``user_text`` (and an optional system message) formatted for the model, ending where its reply starts."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template, config = chat_template(directory)

    def raise_exception(message):
        raise EdgebitError(f"the chat template refused the conversation: {message}")

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
    try:
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = raise_exception
        return environment.from_string(template).render(
            messages=messages, add_generation_prompt=True, bos_token=_special(config, "bos_token"),
            eos_token=_special(config, "eos_token"))
    except jinja2.TemplateError as exc:
        raise EdgebitError(f"{Path(directory) / TOKENIZER_CONFIG}: its chat template fails ({exc})") from None
