#!/usr/bin/env python3
"""PyTorch eager (transformers' LlamaForCausalLM) on the shapes of make_random_gguf's models,
for scale beside TapML and llama.cpp on a GPU: prefill P tokens as one batch, then G decode
steps with the KV cache, greedy; R measured runs after one warm-up; medians of tokens/s.

    bench/torch_bench.py --dim 768 --layers 12 --heads 12 --kv-heads 4 --hidden 2048 --label 125m

Needs torch with CUDA and transformers; prints one JSON line like e2e_bench's.
"""
import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--kv-heads", type=int, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("-p", type=int, default=128, help="prompt tokens")
    ap.add_argument("-g", type=int, default=64, help="decode steps")
    ap.add_argument("-r", type=int, default=3, help="measured runs")
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    try:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        sys.exit(f"torch_bench: {e} (needs torch and transformers)")
    if not torch.cuda.is_available():
        sys.exit("torch_bench: no CUDA device")
    dtype = getattr(torch, a.dtype)
    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.dim, intermediate_size=a.hidden,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.kv_heads, max_position_embeddings=a.p + a.g + 8,
                      tie_word_embeddings=False)
    torch.manual_seed(1)
    model = LlamaForCausalLM(cfg).to(device="cuda", dtype=dtype).eval()
    ids = torch.tensor([[1] + [(i * 7919) % (a.vocab - 3) + 3 for i in range(1, a.p)]], device="cuda")

    def generate():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        past = out.past_key_values
        for _ in range(a.g):
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        return a.p / (t1 - t0), a.g / (t2 - t1)

    with torch.inference_mode():
        generate()
        runs = [generate() for _ in range(a.r)]
    print(json.dumps({"engine": "pytorch-eager", "label": a.label, "dtype": a.dtype,
                      "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "prompt_tokens": a.p, "gen_tokens": a.g,
                      "prefill_tok_s": statistics.median(r[0] for r in runs),
                      "decode_tok_s": statistics.median(r[1] for r in runs)}))


if __name__ == "__main__":
    main()
