"""ICPT repositories on the Hub: the keyword arguments that locate a checkpoint's files, the backbone a checkpoint
names, downloading a concept bank, and uploading a repository with its model card after it.

The model card is the caller's: `push_to_hub(..., card=...)` takes a `huggingface_hub.ModelCard` or a function
`full_repo_id -> ModelCard` (the `icpt` package makes ICPT's cards: `icpt.cards.card_for`); without one, no card.
"""

import tempfile
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

from .input_checks import ICPTInputError, looks_like_local_path

# keyword arguments of `from_pretrained` that locate files, for the checkpoint and for its backbone
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "proxies")
# keyword arguments of `from_pretrained` that locate the checkpoint's own files only (the backbone is another repo)
CHECKPOINT_KWARGS = ("revision", "subfolder")
# keyword arguments the Auto classes and pipelines add about the call itself (besides any `_private` one):
# they never reach the backbone's loader, which adds its own
CALL_KWARGS = ("trust_remote_code", "code_revision", "adapter_kwargs")
# keyword arguments of `push_to_hub` (the same as `PreTrainedModel.push_to_hub`'s)
PUSH_KWARGS = ("commit_message", "commit_description", "private", "token", "revision", "create_pr")
# keyword arguments of `ConceptBank.from_pretrained` that locate a file on the Hub
DOWNLOAD_KWARGS = ("revision", "cache_dir", "force_download", "local_files_only", "token", "subfolder")


def split_load_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """Takes out of `kwargs` the checkpoint's own locating arguments and the ones shared with its backbone (and drops
    the Auto classes' call arguments); what stays goes to the backbone's `from_pretrained`."""
    checkpoint_kwargs = {k: kwargs.pop(k) for k in CHECKPOINT_KWARGS if k in kwargs}
    hub_kwargs = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
    for key in [k for k in kwargs if k.startswith("_") or k in CALL_KWARGS]:
        kwargs.pop(key)
    return checkpoint_kwargs, hub_kwargs


def resolve_backbone(name, folder: Path, checkpoint: str) -> str:
    """
    The backbone a checkpoint's config names: a folder, absolute or relative to the checkpoint's own `folder`
    (never to the working directory), or a Hub id.
    """
    if not name:
        raise ICPTInputError(f"{checkpoint}/config.json names no backbone (base_model_name_or_path): pass backbone=...")
    local = Path(name).expanduser()
    if not local.is_absolute() and folder.is_dir():
        local = folder / local
    if local.is_dir():
        return str(local.resolve())
    if looks_like_local_path(name):
        where = (f"read relative to the checkpoint's folder: {local}" if folder.is_dir()
                 else "a local path, which a checkpoint on the Hub cannot name")
        raise ICPTInputError(
            f"The checkpoint {checkpoint} names the backbone {name!r} ({where}), and there is no such folder: "
            "pass backbone=... or set base_model_name_or_path in its config.json to the backbone's Hub id or path."
        )
    return str(name)


def download_bank(repo_id: str, filename: str, **hub_kwargs) -> str:
    """The local path of a Hub repository's bank file, downloaded (or cached); errors say what to check."""
    try:
        return hf_hub_download(repo_id, filename, **hub_kwargs)
    except HFValidationError:
        raise FileNotFoundError(
            f"No concept bank at {repo_id}: it is neither a file, a folder nor a Hub repo id; check the path."
        ) from None
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"The concept bank {repo_id} is not in the local cache and the Hub cannot be reached: "
            "connect to the Hub (unset HF_HUB_OFFLINE) or give a local file."
        ) from None
    except EntryNotFoundError:
        raise FileNotFoundError(
            f"The Hub repository {repo_id} has no {filename}: push a bank there with bank.push_to_hub({repo_id!r})."
        ) from None
    except HfHubHTTPError as error:
        raise FileNotFoundError(
            f"Cannot download the concept bank {repo_id} from the Hub ({type(error).__name__}): "
            "check the repo id, its revision and your access token."
        ) from None


def push_to_hub(save, repo_id: str, card=None, *, what: str, default_message: str, **kwargs):
    """
    Write a repository with `save(folder)` into a temporary folder and upload it (`push_folder_to_hub`).

    `what` names the caller in the error about unknown keyword arguments (`kwargs` are `PUSH_KWARGS`);
    `default_message` is the commit message unless `kwargs` give one.
    """
    unknown = sorted(set(kwargs) - set(PUSH_KWARGS))
    if unknown:
        raise ValueError(f"{what} got unknown arguments {unknown}; it takes {list(PUSH_KWARGS)}.")
    kwargs.setdefault("commit_message", default_message)
    with tempfile.TemporaryDirectory(prefix="icpt-push-") as folder:
        save(Path(folder) / "repo")
        return push_folder_to_hub(Path(folder) / "repo", repo_id, card, **kwargs)


def push_folder_to_hub(folder, repo_id: str, card=None, *, commit_message: str, commit_description=None,
                       private=None, token=None, revision=None, create_pr=False):
    """
    Upload every file of `folder` to `repo_id` in one commit, then write `card` as its README in a second.

    The card goes last so that nothing in the upload (such as a README from transformers) replaces it;
    it is built and validated before anything is uploaded, so a bad card uploads nothing.

    Args:
        folder: the local folder to upload.
        repo_id: `"namespace/name"`, or `"name"` for the token's own namespace; created if missing.
        card: a `huggingface_hub.ModelCard`, a function `full_repo_id -> ModelCard | None`, or `None` (no card).
        commit_message, commit_description, private, token, revision, create_pr: as in `PreTrainedModel.push_to_hub`.

    Returns:
        The `huggingface_hub.CommitInfo` of the upload (with `create_pr=True`, the card goes to the same pull request).

    Example:

    ```python
    >>> push_folder_to_hub("outputs/projector", "me/icpt-tiny", card, commit_message="Upload projector")  # doctest: +SKIP
    ```
    """
    api = HfApi(token=token)
    if "/" not in repo_id:
        repo_id = f"{api.whoami()['name']}/{repo_id}"
    if callable(card):
        card = card(repo_id)
    if card is not None:
        card.validate()
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                               commit_description=commit_description, revision=revision, create_pr=create_pr)
    if card is not None:
        card.push_to_hub(repo_id, token=token, commit_message="Add the ICPT model card",
                         revision=commit.pr_revision or revision)
    return commit
