"""Fuzzing of the weight-file readers with mutated real files (hypothesis, derandomized).

Every reader (describing, cutting, streaming, the torch-free diff, loading with
torch) must return or raise an ``MregError``, within a time bound and with bounded
memory, whatever the bytes (see tests/weightfuzz.py). The suite runs a few hundred
inputs in seconds; ``MREG_FUZZ_EXAMPLES=50000`` runs a long campaign.
"""

from __future__ import annotations

import os
import random
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")
pytest.importorskip("safetensors")

import weightfuzz

EXAMPLES = int(os.environ.get("MREG_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("MREG_FUZZ_RANDOM") is None,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@cache
def seed_files() -> dict[str, bytes]:
    return weightfuzz.seeds(Path("."))


@cache
def baseline() -> int:
    return weightfuzz.peak_memory()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_every_seed_reads_cleanly(workdir: Path) -> None:
    """The seeds themselves are valid: every reader accepts them (a mutation is what breaks them)."""
    from mreg.pytorch.checkpoints import load_checkpoint

    for name, data in seed_files().items():
        path = workdir / name
        path.write_bytes(data)
        weightfuzz.check_file(path, name, baseline())
        if name.endswith(".pt"):
            load_checkpoint(path)


@FUZZ
@given(name=st.sampled_from(sorted(seed_files())), rng=st.randoms(use_true_random=False))
def test_mutated_weight_files_fail_only_with_mreg_errors(workdir: Path, name: str, rng: random.Random) -> None:
    data = weightfuzz.mutate(name, seed_files()[name], rng)
    path = workdir / f"mutated-{name}"
    path.write_bytes(data)
    weightfuzz.check_file(path, name, baseline())


@FUZZ
@given(rng=st.randoms(use_true_random=False), legacy=st.booleans())
def test_generated_pickles_fail_only_with_mreg_errors(workdir: Path, rng: random.Random, legacy: bool) -> None:
    pickle = weightfuzz.generated_pickle(rng)
    if legacy:
        data = weightfuzz.LEGACY_HEADER + pickle + b"\x80\x02]q\x00."
    else:
        data = weightfuzz.rezip(seed_files()["state.pt"], lambda member, body: pickle if member.endswith("data.pkl") else body)
    path = workdir / "generated.pt"
    path.write_bytes(data)
    weightfuzz.check_file(path, "generated.pt", baseline())
