"""Where a checkpoint comes from: a local directory, or a Hugging Face repo downloaded (or
found in the local cache) with `huggingface_hub`."""

from __future__ import annotations

from pathlib import Path

from .errors import ConvertError

# The files conversion reads; nothing else of a repo is downloaded.
HUB_FILES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
]


def resolve_source(src: str, revision: str | None = None) -> Path:
    """The local directory holding checkpoint `src`.

    `src` is a directory, or a Hugging Face repo id ("owner/name"), which is downloaded with
    progress bars into the Hugging Face cache, or taken from it when `HF_HUB_OFFLINE=1`.

    Raises:
        ConvertError: `src` is neither a directory nor a repo id, the repo does not exist, or it
        is not cached and cannot be downloaded (offline or unreachable).
    """
    p = Path(src).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise ConvertError(f"{src} is a file; give the checkpoint's directory or a Hugging Face repo id")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(src)
    except HFValidationError:
        raise ConvertError(f"{src}: no such directory, and not a Hugging Face repo id (owner/name)") from None
    if src.count("/") != 1:
        raise ConvertError(f"{src}: no such directory, and not a Hugging Face repo id (owner/name)")
    try:
        return Path(snapshot_download(src, revision=revision, allow_patterns=HUB_FILES))
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise ConvertError(
                f"{src} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
                "and HF_HUB_OFFLINE is set: download it once online, or give a local directory"
            ) from None
        raise ConvertError(
            f"{src} could not be downloaded (no connection to the Hugging Face Hub?) and is not in the local cache"
        ) from None
    except GatedRepoError:
        raise ConvertError(
            f"{src} is gated: accept its licence on huggingface.co and log in (huggingface-cli login or HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise ConvertError(f"{src}: no such repository on the Hugging Face Hub (or it is private)") from None
    except RevisionNotFoundError:
        raise ConvertError(f"{src}: no revision {revision!r}") from None
