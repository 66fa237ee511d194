"""What every fuzz target shares: the seed corpus, the atheris set-up, and the rule that an input is
either accepted or refused with the service's own 4xx error; anything else is a finding.

    python -m fuzz.decode CORPUS_DIR [libFuzzer flags: -max_total_time=600 -jobs=2 ...]

Seeds are written into the first corpus folder when it is empty; a found crash is saved as
`crash-<sha1>` (see -artifact_prefix) and reproduces with `python -m fuzz.<target> crash-<sha1>`.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import atheris

from service.errors import ServiceError


def refused_by_the_service(exc: BaseException) -> bool:
    """The expected way to refuse input: a 4xx ServiceError (never a 5xx, never anything else)."""
    return isinstance(exc, ServiceError) and 400 <= exc.status < 500


def fuzz(test_one: Callable[[bytes], None], seeds: Callable[[], list[bytes]]) -> None:
    # Production prints library warnings and goes on; so does the harness (they are not crashes).
    warnings.simplefilter("ignore")
    argv = list(sys.argv)
    folders = [a for a in argv[1:] if not a.startswith("-")]
    if not folders:
        folders = [tempfile.mkdtemp(prefix="fuzz-corpus-")]
        argv.append(folders[0])
        print(f"corpus: {folders[0]}", file=sys.stderr)
    corpus = Path(folders[0])
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
    atheris.Setup(argv, test_one)
    atheris.Fuzz()
