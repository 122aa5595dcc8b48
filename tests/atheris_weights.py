"""Coverage-guided fuzzing of the weight readers with atheris (a long campaign, not part of the suite).

    python tests/atheris_weights.py -max_total_time=1800 -rss_limit_mb=4096 -timeout=60 CORPUS_DIR

The first byte of an input picks what the rest is: a pickle zipped as a torch.save
archive (so mutations reach the pickle machine past the zip's CRCs), a whole
checkpoint (zip or legacy), or a safetensors file. Corpus directories are seeded with
the files of :func:`weightfuzz.seeds`. Any exception other than an MregError is a
finding; so are a hang (``-timeout``) and a memory peak (``-rss_limit_mb``).
"""

from __future__ import annotations

import io
import sys
import tempfile
import zipfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["mreg"]):
    import weightfuzz

    import mreg.checkpoint_pickle  # instrumented for coverage, with the modules below
    import mreg.checkpoints
    import mreg.formats
    import mreg.pytorch.checkpoints  # noqa: F401

WORK = Path(tempfile.mkdtemp(prefix="mreg-atheris-"))
KINDS = ("pickle", "checkpoint", "safetensors")


def as_file(data: bytes) -> tuple[str, bytes]:
    """The file an input stands for, and its name."""
    kind = KINDS[data[0] % len(KINDS)] if data else "checkpoint"
    body = data[1:]
    if kind == "pickle":
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("archive/data.pkl", body)
            archive.writestr("archive/byteorder", "little")
            archive.writestr("archive/data/0", bytes(64))
        return "model.pt", out.getvalue()
    return ("model.safetensors" if kind == "safetensors" else "model.pt"), body


def test_one_input(data: bytes) -> None:
    name, content = as_file(data)
    path = WORK / name
    path.write_bytes(content)
    weightfuzz.read_every_way(path, name)


def seed_corpus(directory: Path) -> None:
    """Write the seeds into an empty corpus directory, in the input format above."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        return
    for index, (name, data) in enumerate(weightfuzz.seeds(directory).items()):
        if name.endswith(".safetensors"):
            (directory / f"seed{index}").write_bytes(bytes([2]) + data)
            continue
        (directory / f"seed{index}").write_bytes(bytes([1]) + data)
        if data.startswith(b"PK"):
            pickled = next(zipfile.ZipFile(io.BytesIO(data)).read(n) for n in zipfile.ZipFile(io.BytesIO(data)).namelist() if n.endswith("data.pkl"))
            (directory / f"seed{index}-pickle").write_bytes(bytes([0]) + pickled)


if __name__ == "__main__":
    corpora = [Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")]
    for corpus in corpora:
        seed_corpus(corpus)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
