#!/usr/bin/env python3
"""Regenerates the tokenizer truth files in tests/data/ from the reference Python libraries
(Hugging Face `tokenizers`, `sentencepiece`), which TapML's tests compare against. Run it where
those libraries are installed (the accelerator machine has them):

    TAPML_SHARED=../shared python3 scripts/make_tokenizer_truth.py [OUT_DIR]

Texts: every input of ../shared/vocab/*.inp (llama.cpp's tokenizer test vectors, first
occurrence kept) plus a few more (full-width forms, ligatures, combining accents, ZWJ emoji).
Writes hf_tokenizers_truth.json (both tokenizer.json files, encode without special tokens)
and sentencepiece_unigram1k_truth.json (ids, pieces and decoded text of the unigram model).
"""
import glob
import json
import os
import sys

SEP = "\n__ggml_vocab_test__\n"
EXTRA = ["hello world", "Hello World", "  leading and  double  spaces ", "tabs\tand\nnewlines\n\n",
         "ＡＢＣ full-width １２３", "café naïve Ångström", "ﬁ ligature ① circled", "",
         "日本語のテキスト", "emoji 🦙🔥 and ZWJ 👩‍👩‍👧"]


def texts(shared):
    out = []
    for path in sorted(glob.glob(os.path.join(shared, "vocab", "*.inp"))):
        with open(path, encoding="utf-8") as f:
            parts = f.read().split(SEP)
        if parts and parts[-1] == "":
            parts = parts[:-1]
        out += [p for p in parts if p not in out]
    return out + [e for e in EXTRA if e not in out]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("TAPML_SHARED", os.path.join(here, "..", "..", "shared"))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "data")
    import sentencepiece
    import tokenizers

    cases = texts(shared)
    hf = {"source": "Hugging Face tokenizers %s, Tokenizer.from_file(...).encode(text, "
                    "add_special_tokens=False).ids" % tokenizers.__version__}
    for name in ["gpt-neox-20b_tokenizer.json", "llama2_tokenizer.json"]:
        tok = tokenizers.Tokenizer.from_file(os.path.join(shared, "tokenizers", name))
        hf[name] = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in cases]
    with open(os.path.join(out_dir, "hf_tokenizers_truth.json"), "w", encoding="utf-8") as f:
        json.dump(hf, f, ensure_ascii=False, indent=0)

    model = "sentencepiece_test_model_unigram1k.model"
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(shared, "tokenizers", model))
    spm = {"about": model + " (shared/tokenizers) as the sentencepiece Python library encodes "
                            "(ids, pieces) and decodes each text",
           "sentencepiece_version": sentencepiece.__version__,
           "meta": {"bos": sp.bos_id(), "eos": sp.eos_id(), "unk": sp.unk_id(),
                    "pad": sp.pad_id(), "size": sp.get_piece_size()},
           "cases": [{"text": t, "ids": sp.encode(t), "pieces": sp.encode(t, out_type=str),
                      "decoded": sp.decode(sp.encode(t))} for t in cases]}
    with open(os.path.join(out_dir, "sentencepiece_unigram1k_truth.json"), "w",
              encoding="utf-8") as f:
        json.dump(spm, f, ensure_ascii=False, indent=0)
    print(f"{len(cases)} texts; wrote {out_dir}/hf_tokenizers_truth.json and "
          f"sentencepiece_unigram1k_truth.json")


if __name__ == "__main__":
    main()
