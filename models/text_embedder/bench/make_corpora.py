"""Write this folder's benchmark corpora from text that ships with Python: stdlib docstrings.

Usage (from the project root): ``.venv/bin/python models/text_embedder/bench/make_corpora.py``.
Nothing is downloaded. The text is the prose of the docstrings of the standard-library modules
listed below and of their public functions and classes (doctest lines and code-like lines dropped),
cut into paragraphs and sentences and counted in tokens with this model's own tokenizer.json.
A fixed seed makes the output depend only on the Python version (recorded in each file).

- ``corpus_mixed.json``: 240 requests as a search or RAG service sees them: short queries and
  sentences, paragraphs, whole docstrings longer than the model's 256 tokens (truncated), and a
  few requests that carry several sentences at once (``{"texts": [...]}``).
- ``corpus_same_length.json``: single sentences of exactly the same token count (12 with [CLS]
  and [SEP]; every such sentence, at most 200: 122 with Python 3.11.7): what batching gains when
  padding costs nothing.

bench/ serves every ``*.json`` here as one corpus: ``{"content_type", "targets", "requests": [bodies]}``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import platform
import random
import re
from pathlib import Path

from tokenizers import Tokenizer

# Served beside the defaults in `make bench`: the settings before length-aware batching (issue #12),
# which the new defaults must not lose to at any concurrency on mixed lengths.
BASELINE = {"label": "the defaults before length-aware batching: batch 1", "settings": {"batchSize": 1}}
NO_WORSE_THAN_BASELINE = {
    "1": {"p50_vs_flask": 1.0, "vs_baseline": 1.0},
    "4": {"vs_baseline": 1.0},
    "64": {"vs_baseline": 1.0},
}

HERE = Path(__file__).resolve().parent
MODULES = """argparse ast asyncio base64 bisect calendar cmd codecs collections concurrent.futures configparser
contextlib copy csv dataclasses datetime decimal difflib doctest email enum filecmp fnmatch fractions ftplib
functools getopt gettext glob gzip hashlib heapq hmac html http.client http.server imaplib inspect io ipaddress
itertools json locale logging lzma mailbox math mimetypes multiprocessing netrc numbers operator optparse os
pathlib pickle pickletools pkgutil platform plistlib poplib pprint profile pstats queue quopri random re reprlib
sched secrets selectors shelve shlex shutil signal smtplib socket socketserver sqlite3 ssl statistics string
struct subprocess symtable tarfile tempfile textwrap threading timeit tokenize trace traceback types typing
unittest urllib.parse urllib.request uuid warnings weakref zipfile zipimport""".split()
SEED = 12
SAME_LENGTH = 12  # tokens, [CLS] and [SEP] included


def docstrings() -> list[str]:
    """Each listed module's docstring and those of its public functions and classes, in order."""
    out = []
    for name in MODULES:
        module = importlib.import_module(name)
        out.append(inspect.getdoc(module) or "")
        for attr, value in sorted(vars(module).items()):
            if not attr.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value)):
                if getattr(value, "__module__", None) == module.__name__:
                    out.append(inspect.getdoc(value) or "")
    return [d for d in out if d]


def paragraphs(doc: str) -> list[str]:
    """Prose paragraphs: blank-line separated, code, tables and signatures dropped."""
    out = []
    for block in re.split(r"\n\s*\n", doc):
        lines = [line.strip() for line in block.splitlines()]
        if any(line.startswith((">>>", "...", "$", "|", "+-", "::")) for line in lines):
            continue
        text = " ".join(" ".join(lines).split())
        letters = sum(c.isalpha() or c.isspace() for c in text)
        if len(text) > 30 and letters / len(text) > 0.9 and text[0].isupper() and text[-1] in ".:":
            out.append(text)
    return out


def sentences(paragraph: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph) if s.endswith(".") and len(s) > 15]


def main() -> None:
    tokenizer = Tokenizer.from_file(str(HERE.parent / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(text: str) -> int:
        return len(tokenizer.encode(text).ids)

    docs = docstrings()
    paras = list(dict.fromkeys(p for d in docs for p in paragraphs(d)))
    sents = list(dict.fromkeys(s for p in paras for s in sentences(p)))
    rng = random.Random(SEED)
    short = [s for s in sents if 6 <= count(s) <= 40]
    medium = [p for p in paras if 40 < count(p) <= 200]
    long = list(dict.fromkeys(" ".join(paragraphs(d)) for d in docs))
    long = [t for t in long if count(t) > 300]
    requests = [{"text": s} for s in rng.sample(short, 150)]
    requests += [{"text": p} for p in rng.sample(medium, 50)]
    requests += [{"text": t} for t in rng.sample(long, 15)]
    requests += [{"texts": rng.sample(short, rng.randint(2, 6))} for _ in range(25)]
    rng.shuffle(requests)
    source = f"docstrings of {len(MODULES)} standard-library modules, Python {platform.python_version()}"
    write(
        "corpus_mixed.json",
        "mixed lengths: 150 sentences (6-40 tokens), 50 paragraphs (41-200), 15 whole docstrings (>300, "
        "truncated to 256), 25 requests of 2-6 sentences",
        source,
        requests,
        NO_WORSE_THAN_BASELINE | {"16": {"vs_flask": 1.5, "vs_baseline": 1.0}},
    )
    same = [s for s in sents if count(s) == SAME_LENGTH]
    write(
        "corpus_same_length.json",
        f"{min(200, len(same))} single sentences of exactly {SAME_LENGTH} tokens ([CLS] and [SEP] included)",
        source,
        [{"text": s} for s in rng.sample(same, min(200, len(same)))],
        {"1": {"p50_vs_flask": 1.0}, "16": {"vs_flask": 2.0, "vs_limit": 0.7}, "64": {"vs_limit": 0.85}},
    )


def write(name: str, what: str, source: str, requests: list, targets: dict) -> None:
    document = {
        "note": f"{what}. Generated by make_corpora.py in this folder from {source}; do not edit by hand. "
        "targets: what `make bench` checks per concurrency (bench/summary.py TARGET_KINDS; issue #12); "
        "baseline: settings the same archive is also served and measured with (bench/run.py).",
        "content_type": "application/json",
        "targets": targets,
        "baseline": BASELINE,
        "requests": requests,
    }
    (HERE / name).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"{name}: {len(requests)} requests")


if __name__ == "__main__":
    main()
