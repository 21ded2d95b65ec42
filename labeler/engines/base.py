"""The narrow interface every LLM backend implements, and the grade extraction they share.

Two operations are all the pipeline needs: `generate` (query synthesis) and `grade` (one forward
pass, read the next-token distribution over the grade tokens). A grade is never invented: when
no grade token is among the model's top candidates the result is an error, not a 0.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..reasons import TRANSIENT
from ..schema import GRADES

GRADE_STRINGS = {str(g): g for g in GRADES}
log = logging.getLogger(__name__)


@dataclass
class Completion:
    text: Optional[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: Optional[str] = None          # a reason code of labeler.reasons, e.g. SERVER_ERROR
    detail: Optional[str] = None


@dataclass
class GradeResult:
    probs: Optional[list[float]] = None  # P(grade = 0..3), renormalised over the grade tokens
    mass: Optional[float] = None         # how much probability the model put on grade tokens at all
    prompt_tokens: int = 0
    raw: Optional[str] = None            # what the model produced, for failures and audits
    error: Optional[str] = None
    detail: Optional[str] = None
    top: dict = field(default_factory=dict)
    # A scorer with no grade distribution (a cross-encoder) gives its calibrated expected grade instead.
    calibrated: Optional[float] = None

    @property
    def grade(self) -> Optional[int]:
        if self.probs is None:
            return None if self.calibrated is None else int(math.floor(min(3.0, max(0.0, self.calibrated)) + 0.5))
        return max(GRADES, key=lambda g: self.probs[g])

    @property
    def expected(self) -> Optional[float]:
        if self.probs is None:
            return self.calibrated
        return float(sum(g * p for g, p in zip(GRADES, self.probs)))


def grade_from_top_logprobs(top: dict[str, float]) -> tuple[Optional[list[float]], float]:
    """Aggregate candidate tokens (' 2', '2', ...) per grade; None when no grade token is present."""
    per_grade = [0.0] * len(GRADES)
    for token, logprob in top.items():
        g = GRADE_STRINGS.get(token.strip())
        if g is not None and logprob is not None and logprob > -math.inf:
            per_grade[g] += math.exp(logprob)
    mass = sum(per_grade)
    if mass <= 0.0:
        return None, 0.0
    return [p / mass for p in per_grade], mass


def grade_from_text(text: str) -> Optional[int]:
    """Strict parse of a generated answer: the first non-space character must be the grade digit."""
    s = (text or "").strip().lstrip("*#:").strip()
    if s and s[0] in GRADE_STRINGS and (len(s) == 1 or not s[1].isdigit()):
        return GRADE_STRINGS[s[0]]
    return None


class Engine:
    """A loaded model. Implementations: VLLMEngine, OpenAIEngine, TransformersEngine."""

    model_id: str = ""
    model_version: str = ""
    # Local engines expose their tokenizer so that prompts can be truncated by tokens.
    tokenizer = None
    # True for engines that grade pair rows themselves (grade_pairs) instead of prompts.
    reads_pairs = False
    # True for engines whose grade() and generate() take `keys=` (one name per prompt, the pair
    # key: a Batch API line's custom_id).
    takes_keys = False

    def generate(self, prompts: Sequence, *, max_tokens: int, temperature: float,
                 seeds: Optional[Sequence[int]] = None) -> list[Completion]:
        """One completion per prompt; `seeds` (one per prompt) make sampling repeatable."""
        raise NotImplementedError

    def grade(self, prompts: Sequence, *, top_logprobs: int = 20) -> list[GradeResult]:
        raise NotImplementedError

    def prompt(self, messages: list[dict], assistant_prefix: str = ""):
        """Chat messages -> what this engine takes as one prompt."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + assistant_prefix

    def count_tokens(self, prompt) -> int:
        return len(self.tokenizer.encode(prompt, add_special_tokens=False)) if self.tokenizer else 0

    def is_dead(self, exc: BaseException) -> bool:
        """True when `exc` means this engine can answer nothing more (its process died)."""
        return False

    def close(self) -> None:
        pass


# Failures that say nothing about the pair: an outage, a slow or overloaded server. Only these are
# regraded by `--retry-failed`; the rest (bad input, no grade token, over-long prompt) would fail again.
# The list is labeler.reasons (its `transient` flag); this name is kept for existing imports.
TRANSIENT_ERRORS = TRANSIENT

# The exit status of an engine actor whose engine died: Ray restarts the actor (up to the
# engine's max_restarts) and retries its batch there; finished parts are kept.
EXIT_ENGINE_DEAD = 75


def call_engine(engine: Engine, fn, *args, **kwargs):
    """`fn(*args, **kwargs)`; if the engine died meanwhile, the actor process exits (its engine
    processes killed first) instead of failing the batch, so that Ray starts a fresh one."""
    watch = getattr(engine, "watch", None)
    try:
        if watch is None:
            return fn(*args, **kwargs)
        with watch.busy():
            return fn(*args, **kwargs)
    except Exception as e:
        if engine.is_dead(e):
            exit_dead(engine.model_id, f"{type(e).__name__}: {e}")
        raise


class EngineThread:
    """One thread for an engine's whole life in an actor: the engine is built there and called there.

    On a CPU, torch runs a model on libgomp thread teams that belong to the thread that starts
    them. Ray Data builds an actor's UDF in the actor's main thread and calls it from a thread of
    its own, so an engine built in one and called in the other kept two teams for two cores:
    libgomp then counts more threads than CPUs, and its threads sleep at every barrier instead of
    spinning: more context switches and fewer pairs graded than from the thread that built it
    (docs/benchmarks.md).
    """

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labeler-engine")

    def run(self, fn, *args, **kwargs):
        """`fn(*args, **kwargs)` on the engine's thread; its exception is raised here."""
        return self._pool.submit(fn, *args, **kwargs).result()


def exit_dead(model_id: str, why: str) -> None:
    from ..reaper import kill_children

    log.error("engine %s died (%s); the actor exits so that Ray restarts it and retries the batch", model_id, why)
    kill_children()
    os._exit(EXIT_ENGINE_DEAD)


class EngineWatch:
    """Watches an engine while a call is in flight, and ends the actor itself (exit_dead) when the
    call may never return: one of the engine's own processes died (vLLM 0.32's sync client waits
    forever on its output queue after its EngineCore is killed), or, with `stall_s`, no engine step
    finished for that long (an engine in this process has no other step timeout)."""

    def __init__(self, procs: list, model_id: str, every_s: float = 1.0, stall_s: float | None = None):
        self.procs, self.model_id, self.every_s, self.stall_s = procs, model_id, every_s, stall_s
        self._busy = 0
        self._last = time.monotonic()
        threading.Thread(target=self._run, daemon=True, name="labeler-engine-watch").start()

    def tick(self) -> None:
        """The engine finished a step: the stall clock starts again."""
        self._last = time.monotonic()

    def busy(self):
        from contextlib import contextmanager

        @contextmanager
        def cm():
            self.tick()
            self._busy += 1
            try:
                yield
            finally:
                self._busy -= 1
        return cm()

    def dead(self) -> list[str]:
        import psutil

        out = []
        for p in self.procs:
            try:
                if not p.is_running() or p.status() == psutil.STATUS_ZOMBIE:
                    out.append(f"pid {p.pid}")
            except psutil.Error:
                out.append(f"pid {p.pid}")
        return out

    def _run(self):
        while True:
            time.sleep(self.every_s)
            if self._busy:
                gone = self.dead()
                if gone:
                    exit_dead(self.model_id, f"its process {', '.join(gone)} exited during a call")
                idle = time.monotonic() - self._last
                if self.stall_s is not None and idle > self.stall_s:
                    exit_dead(self.model_id, f"no engine step finished in {idle:.0f} s (limit {self.stall_s:g} s)")
