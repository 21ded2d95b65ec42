"""The one validated place for configuration: YAML -> pydantic models, one section per stage.

Unknown keys and wrong types are errors naming the file and the dotted key, because a typo in
a config that silently falls back to a default wastes a cluster run.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RayConfig(_Strict):
    # None: start a local Ray with the resources below; "auto" or "ray://...": join a cluster.
    address: Optional[str] = None
    num_cpus: Optional[int] = Field(None, ge=1, description="local Ray only; default: all cores")
    object_store_memory: int = Field(500_000_000, ge=78_643_200)
    # Environment every worker needs (merged into the runtime_env).
    env: dict[str, str] = Field(default_factory=dict)


class StorageConfig(_Strict):
    """How s3:// URIs are reached. Credentials are not settings: they come from the standard AWS
    chain (environment, ~/.aws files, an instance role), so no config or manifest holds one."""

    # An S3-compatible server instead of AWS: MinIO, Ceph, ... e.g. http://minio.internal:9000.
    # None: AWS, or AWS_ENDPOINT_URL when set.
    endpoint_override: Optional[str] = None
    # None: the bucket's own region (looked up), else AWS_DEFAULT_REGION.
    region: Optional[str] = None


class DatasetInput(_Strict):
    """How a Hugging Face dataset given as `--pairs` (a `save_to_disk` folder or
    hf://datasets/ORG/NAME) is read: which split and subset, and which of its columns are the
    pairs' fields (`columns: {query: question, text: passage}`; unnamed fields keep their names)."""

    split: Optional[str] = Field(None, description="default: the only split, else an error naming them")
    subset: Optional[str] = Field(None, description="the dataset's configuration name, if it has several")
    revision: Optional[str] = None
    columns: dict[Literal["query_id", "query", "doc_id", "title", "text", "doc_meta", "source", "split",
                          "bm25_rank", "bm25_score"], str] = Field(default_factory=dict)


class EngineConfig(_Strict):
    """An LLM backend and how many copies of it to run."""

    # A name in labeler.engines.BACKENDS (vllm, openai, transformers; cross_encoder and bi_encoder
    # for distilled students, also picked automatically for their export folders); checked before
    # any command starts (labeler.preflight).
    backend: str = "vllm"
    model: str = Field(..., description="local dir, hub id, or offline:<name> (see labeler.models)")
    # auto: bfloat16 on a GPU or a CPU with native bf16 (AVX512_BF16/AMX), float32 otherwise (labeler.hardware).
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_model_len: int = Field(2048, ge=64)
    max_num_seqs: int = Field(64, ge=1)
    kv_cache_gib: float = Field(1.0, gt=0, description="vLLM CPU KV cache (VLLM_CPU_KVCACHE_SPACE)")
    # The memory one engine actor asks Ray for (GB, 10^9 bytes), so that Ray places engines only
    # where they fit. None: estimated from the model's weights, dtype, KV cache and vLLM's runtime
    # (labeler.engines.memory); a GPU engine declares none unless set.
    memory_gb: Optional[float] = Field(None, gt=0)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1)
    enable_prefix_caching: bool = True
    # vLLM: at most this many tokens in one engine step (chunked prefill). On a CPU one step of a
    # whole batch of long prompts can outlast vLLM's execute-model timeout; None: vLLM's default
    # on a GPU, 2048 on a CPU.
    max_num_batched_tokens: Optional[int] = Field(None, ge=64)
    # vLLM on a CPU: the KV block size (prefix caching reuses whole blocks only; None: 32 on a
    # CPU, its smallest, so that more of a prompt's shared prefix is cached than at vLLM's 128).
    block_size: Optional[int] = Field(None, ge=16)
    # vLLM on a CPU: OpenMP threads of the model. None: vLLM's own binding (it keeps one core for
    # its scheduler); "all": every core of the machine, none kept (one engine per machine, whose
    # model then also gets the core vLLM keeps, the faster choice on few cores); N: cores 0..N-1.
    cpu_threads: Optional[Union[int, Literal["all"]]] = None
    # vLLM: run the engine core and its worker inside the engine actor's own process (vLLM's
    # in-process client and "uni" executor) instead of an EngineCore and a Worker process. None
    # (the default): in process on a CPU, where the EngineCore's shared-memory queue busy-waits for
    # a core the model needs and only this mode keeps the engine's memory flat (labeler.allocator);
    # engine processes on a GPU and with tensor_parallel_size > 1. A step past vLLM's
    # execute-model limit ends the actor, as a dead EngineCore process does (engines.vllm_engine).
    in_process: Optional[bool] = None
    # The malloc of a vLLM engine's processes (labeler.allocator). auto: jemalloc (Ray's own
    # library, decay off) for an in_process engine on a CPU, where glibc's heap grows over a run
    # with vLLM's step-sized vocabulary tensors; glibc otherwise. system: glibc; jemalloc: always.
    malloc: Literal["auto", "jemalloc", "system"] = "auto"
    # Ray Data actor pool: rows per call, and resources per engine actor.
    batch_size: int = Field(32, ge=1)
    num_actors: Optional[int] = Field(None, ge=1, description="default: sized from free resources")
    cpus_per_actor: float = Field(1.0, gt=0)
    # An engine actor whose engine dies (a crashed or timed-out vLLM EngineCore) is restarted this
    # many times; its batch is retried there and finished parts are kept.
    max_restarts: int = Field(2, ge=0)
    gpus_per_actor: float = Field(0.0, ge=0)
    # Custom Ray resources each engine actor asks for. A node started with `ray start
    # --resources='{"labeler_engine": 1}'` and {"labeler_engine": 1} here: one engine per such node.
    resources_per_actor: dict[str, float] = Field(default_factory=dict)
    # OpenAI-compatible endpoints.
    base_url: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(8, ge=1)
    # requests: one chat-completions call per pair; batch: each engine batch of pairs is one
    # OpenAI Batch API job (a JSONL file uploaded, polled, its results read back), at batch prices.
    mode: Literal["requests", "batch"] = "requests"
    batch_poll_s: float = Field(30.0, gt=0, description="seconds between polls of a submitted batch")
    batch_window: Literal["24h"] = "24h"
    # Where the ids of submitted batches are kept (batches.sqlite), so that a restarted run polls
    # the batch it paid for instead of submitting it again. None: the grading stage's work folder
    # (outside a stage: next to the request cache).
    batch_dir: Optional[str] = None
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)
    # A reply that is not a grade is asked again (sampling at temperature 0.3) this many times.
    parse_retries: int = Field(1, ge=0)
    # Answers of remote endpoints are kept (SQLite) so a rerun pays nothing twice; None: in LABELER_CACHE.
    request_cache: bool = True
    request_cache_path: Optional[str] = None
    # Prices for cost accounting (USD); zero for local models.
    usd_per_1m_input_tokens: float = Field(0.0, ge=0)
    usd_per_1m_output_tokens: float = Field(0.0, ge=0)

    def runs_in_process(self, gpu: bool) -> bool:
        """in_process as this engine runs it, on a GPU or not (None: in process on a CPU)."""
        if self.in_process is not None:
            return self.in_process
        return not gpu and self.tensor_parallel_size == 1

    @model_validator(mode="after")
    def _one_process_one_device(self):
        if self.in_process and self.tensor_parallel_size > 1:
            raise ValueError("in_process runs the model in the engine actor's process: it needs "
                             f"tensor_parallel_size 1, not {self.tensor_parallel_size}")
        return self

    @model_validator(mode="after")
    def _memory_holds_the_kv_cache(self):
        # On a CPU vLLM allocates the whole KV cache when it starts: less memory than that can never hold it.
        kv_gb = max(1, round(self.kv_cache_gib)) * (1 << 30) / 1e9
        if (self.memory_gb is not None and self.backend == "vllm" and self.gpus_per_actor == 0
                and self.memory_gb <= kv_gb):
            raise ValueError(f"memory_gb ({self.memory_gb:g}) must be more than the KV cache alone "
                             f"(kv_cache_gib {self.kv_cache_gib:g} = {kv_gb:.2f} GB) plus the model")
        return self


# How fast an engine runs, not what it answers: left out of stage fingerprints, so that adding
# actors or tuning a batch never redoes (or re-pays for) a finished stage.
ENGINE_RUNTIME_FIELDS = frozenset({
    "max_num_seqs", "kv_cache_gib", "memory_gb", "gpu_memory_utilization", "tensor_parallel_size", "enable_prefix_caching",
    "max_num_batched_tokens", "block_size", "cpu_threads", "in_process", "malloc", "batch_size", "num_actors",
    "cpus_per_actor", "gpus_per_actor", "resources_per_actor", "max_restarts", "concurrency", "mode", "batch_poll_s", "batch_window",
    "batch_dir", "timeout_s", "max_retries", "request_cache", "request_cache_path",
})


def identity(model: BaseModel) -> Any:
    """A config section as JSON for fingerprints: every engine in it without its runtime fields."""
    def walk(m, d):
        if isinstance(m, EngineConfig):
            return {k: v for k, v in d.items() if k not in ENGINE_RUNTIME_FIELDS}
        if isinstance(m, BaseModel):
            return {k: walk(getattr(m, k), v) for k, v in d.items()}
        return d

    return walk(model, model.model_dump(mode="json"))


class CorpusConfig(_Strict):
    # JSONL/Parquet files or a folder of them, a storage URI, a Hugging Face dataset saved with
    # `save_to_disk`, or hf://datasets/ORG/NAME (id_field, text_field, title_field map its columns).
    path: str
    format: Literal["auto", "jsonl", "parquet"] = "auto"
    id_field: str = "doc_id"
    text_field: str = "text"
    title_field: Optional[str] = "title"
    # Documents outside these bounds are rejected with a reason, not silently dropped.
    min_chars: int = Field(20, ge=1)
    max_chars: int = Field(1_000_000, ge=1)
    limit: Optional[int] = Field(None, ge=1, description="read only the first N documents")
    # A Hugging Face dataset: its split (default: the only one) and subset (configuration name).
    split: Optional[str] = None
    subset: Optional[str] = None
    revision: Optional[str] = None

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) > max_chars ({self.max_chars})")
        return self


class SynthesizeConfig(_Strict):
    engine: EngineConfig
    prompt: str = "synthesize"
    seed_docs: Optional[int] = Field(None, ge=1, description="sample this many seed documents; default all")
    # Seeds are sampled round-robin over the values of this field (a DOCS column or a metadata key).
    stratify_by: str = "doc_type"
    # Query kinds and how many of each to ask for per seed document.
    kinds: dict[Literal["keyword", "question", "navigational", "partial_recall", "acronym", "consumer_health"], int] = Field(
        default_factory=lambda: {"keyword": 1, "question": 1})
    # Few-shot examples per kind: a YAML template name or path (e.g. few_shot_queries); None: zero-shot.
    few_shot: Optional[str] = None
    few_shot_per_kind: int = Field(2, ge=1)
    # Long documents are split into passages of this many words (None: whole documents, truncated
    # to max_doc_tokens); the miner indexes the same passages.
    chunk_tokens: Optional[int] = Field(None, ge=16)
    chunk_overlap: int = Field(0, ge=0)
    max_doc_tokens: int = Field(384, ge=16)
    temperature: float = Field(0.7, ge=0)
    max_new_tokens: int = Field(48, ge=4)
    min_query_chars: int = Field(3, ge=1)
    max_query_chars: int = Field(200, ge=8)
    # A query sharing a run of this many words with its document copies it rather than asks for it.
    max_copied_words: int = Field(8, ge=3)
    # Queries of one seed document whose word sets overlap this much (Jaccard) are near-duplicates.
    near_duplicate_jaccard: float = Field(0.8, gt=0, le=1)
    # Queries not written in this language are rejected (a light script + stopword check); None: any.
    language: Optional[Literal["en", "de", "fr", "es", "it", "pt", "nl", "ru", "zh", "ja", "ko", "ar", "el"]] = "en"
    # Round trip: reject a query whose seed document BM25 does not rank in the top k; None: off.
    round_trip_k: Optional[int] = Field(None, ge=1)
    round_trip_backend: Literal["bm25s", "pyserini"] = "bm25s"

    @model_validator(mode="after")
    def _kinds(self):
        if not self.kinds or sum(self.kinds.values()) < 1:
            raise ValueError("kinds must ask for at least one query per document")
        if any(v < 0 for v in self.kinds.values()):
            raise ValueError("kinds counts must be >= 0")
        if self.chunk_tokens is not None and self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_tokens ({self.chunk_tokens})")
        return self


class MineConfig(_Strict):
    # bm25s: embedded, the default; pyserini: Lucene (needs Java 21, see docs/stack.md), for large corpora.
    backend: Literal["bm25s", "pyserini"] = "bm25s"
    depth: int = Field(30, ge=2, description="BM25 results retrieved per query")
    # Hard negatives are sampled from this window of BM25 ranks (1-based, inclusive); default (2, depth).
    rank_window: Optional[tuple[int, int]] = None
    negatives_per_query: int = Field(3, ge=0)
    # Documents drawn uniformly from the corpus, besides the BM25 ones (source "random").
    random_negatives: int = Field(0, ge=0)
    # A candidate whose 5-gram Jaccard with the seed reaches this is a copy of it (a draft, a
    # re-post), never a negative; drafts in the demo corpus sit at 0.72 with their final version.
    near_dup_threshold: float = Field(0.7, gt=0, le=1)
    heldout_fraction: float = Field(0.25, ge=0, lt=1)
    batch_size: int = Field(256, ge=1)
    # Mining actors (default: sized from the CPUs) and search threads per actor.
    num_workers: Optional[int] = Field(None, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    # How workers reach the index: a path on shared storage, the object store, or auto
    # (object store when the cluster has more than one node).
    index_transport: Literal["auto", "path", "object_store"] = "auto"

    @property
    def window(self) -> tuple[int, int]:
        return self.rank_window or (2, self.depth)

    @model_validator(mode="after")
    def _window(self):
        lo, hi = self.window
        if not 1 <= lo <= hi:
            raise ValueError(f"rank_window must satisfy 1 <= lo <= hi, got {self.rank_window}")
        if hi > self.depth:
            raise ValueError(f"rank_window upper bound {hi} exceeds depth {self.depth}")
        return self


class GradeConfig(_Strict):
    """Shared by the teacher (judge) and the student (label): one prompt, one grade scale."""

    # The defaults are the ones that agreed best with human grades (bench/judge_liveqa.py,
    # docs/benchmarks.md): grade_plain over grade_umbrela, and 192 document tokens over 96 and 384.
    prompt: str = "grade_plain"
    max_doc_tokens: int = Field(192, ge=16)
    # Fewer than this probability mass on the grade tokens is recorded (grade_mass), still graded;
    # no grade token at all among the top logprobs is a failure, never a grade.
    top_logprobs: int = Field(20, ge=1)


class JudgeConfig(_Strict):
    engine: EngineConfig
    grading: GradeConfig = Field(default_factory=GradeConfig)


class CrossEncoderConfig(_Strict):
    """The cross-encoder student (distill.kind=cross_encoder): its own model and optimiser settings;
    the Ray resources (num_workers, use_gpu, cpus_per_worker) are distill's."""

    base_model: str = "offline:all-minilm-l6-v2"
    # lce: one teacher-positive and group_size-1 BM25 negatives per group, softmax cross-entropy;
    # pointwise: regress the teacher's expected grade on every graded pair; margin_mse: within a
    # query, the score margin of two of its documents regresses their expected-grade margin (the
    # bi-encoder's MarginMSE: only what the teacher says within a query is learnt).
    loss: Literal["lce", "pointwise", "margin_mse"] = "lce"
    pointwise_loss: Literal["mse", "bce"] = "mse"
    group_size: int = Field(8, ge=2)
    temperature: float = Field(1.0, gt=0)
    # The positive: the query's highest-graded pair, if its grade reaches this.
    positive_min_grade: int = Field(2, ge=1, le=3)
    # Negatives come from these BM25 ranks (1-based, inclusive); None: any rank.
    negative_rank_window: Optional[tuple[int, int]] = None
    max_seq_len: int = Field(256, ge=16)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    epochs: int = Field(1, ge=1)
    max_steps: Optional[int] = Field(None, ge=1, description="optimizer steps per epoch at most")
    # Groups per optimizer step per worker (pointwise: batch_groups x group_size pairs).
    batch_groups: int = Field(4, ge=1)
    score_batch_size: int = Field(32, ge=1, description="pairs per forward pass when scoring")
    # Weak supervision that costs no teacher call: this many extra LCE groups whose query is a
    # corpus document's title, the document its positive and BM25 results for the title (from
    # negative_rank_window, near-duplicates excluded, as in mine) its negatives. Documents of
    # held-out queries are never used. 0: teacher groups only.
    title_groups: int = Field(0, ge=0)
    title_min_words: int = Field(3, ge=1, description="shorter titles are not used as queries")
    # cosine: the score is the base model's own cosine (as a sentence-transformers bi-encoder)
    # mapped linearly to the teacher's grade scale, plus the cross-encoder's output, whose head
    # starts at zero. Training then starts from the free baseline's ranking and learns only what
    # the teacher adds to it (a residual); a head trained from nothing needs far more pairs than a
    # teacher here can grade. none: the cross-encoder's output alone.
    prior: Literal["none", "cosine"] = "none"
    prior_max_seq_len: int = Field(128, ge=16, description="tokens of a document the prior's bi-encoder reads")
    # What pointwise and margin_mse regress, per pair: the teacher's expected grade, or the
    # bi-encoder's committee (bi_encoder.target) of it with BM25 and the base model's cosine, put
    # on the grade scale. LCE groups take their positive by the teacher's grade either way.
    target: Literal["teacher", "committee"] = "teacher"
    committee_weights: dict[Literal["teacher", "bm25", "cosine", "seed"], float] = Field(
        default_factory=lambda: {"teacher": 0.5, "bm25": 0.2, "cosine": 0.3})

    @model_validator(mode="after")
    def _window(self):
        if self.negative_rank_window is not None and not 1 <= self.negative_rank_window[0] <= self.negative_rank_window[1]:
            raise ValueError(f"negative_rank_window must satisfy 1 <= lo <= hi, got {self.negative_rank_window}")
        if self.title_groups and self.loss != "lce":
            raise ValueError("title_groups need loss: lce (a title query has a positive, not a graded pair)")
        if self.target == "committee" and self.loss == "lce":
            raise ValueError("target: committee needs loss pointwise or margin_mse (LCE groups have no target)")
        return self


class BiEncoderConfig(_Strict):
    """The bi-encoder student (distill.kind=bi_encoder): a sentence-transformers model fine-tuned so
    that its cosine follows the teacher's expected grades, and kept from drifting below what it knew."""

    base_model: str = "offline:all-minilm-l6-v2"
    # What the cosine is trained towards, per pair: the teacher's expected grade; or a committee
    # (weights below) of the teacher's grade, BM25's score scaled within its query, the base
    # model's own cosine, and whether the document is the query's seed (the one it was written
    # from), so the student keeps what the base model and BM25 already know.
    target: Literal["teacher", "committee"] = "teacher"
    committee_weights: dict[Literal["teacher", "bm25", "cosine", "seed"], float] = Field(
        default_factory=lambda: {"teacher": 0.5, "bm25": 0.2, "cosine": 0.3})
    # margin_mse: within a query, the difference of two documents' cosines regresses the difference
    # of their targets (GPL); cosent: a ranking loss over every pair of pairs in a batch, across
    # queries; both: their sum.
    loss: Literal["margin_mse", "cosent", "both"] = "margin_mse"
    max_seq_len: int = Field(256, ge=16)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    epochs: int = Field(1, ge=1)
    max_steps: Optional[int] = Field(None, ge=1, description="optimizer steps per epoch at most")
    batch_size: int = Field(32, ge=2, description="pairs (margin_mse: pairs of pairs) per step per worker")
    # Held-out teacher pairs scored after every epoch: the export is the best epoch (or the base
    # model itself, epoch 0, when no epoch beat it) by this measure.
    select_by: Literal["spearman", "pairwise_accuracy", "ndcg@10", "last"] = "spearman"
    # Weight-space ensembling (WiSE-FT, Wortsman et al. 2022): the export's weights are this share
    # of the base model's plus the rest of the fine-tuned one's (0.5, that paper's default). One
    # encoder, so labeling costs the same; it keeps what the pretrained encoder knew where the
    # teacher is weak. Not chosen on held-out teacher pairs: they favour the teacher's errors. 0: off.
    base_weight: float = Field(0.5, ge=0, lt=1)
    score_batch_size: int = Field(64, ge=1)


class _DistillBase(_Strict):
    """What every student kind shares: the Ray Train workers it trains on, and the model it starts
    from (each kind keeps that in its own place, so each says where)."""

    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    # In a pipeline run, the share of the train split's queries the student validates on (epoch
    # choice, calibration); the held-out split stays unseen, so the evaluate stage measures it fairly.
    validation_fraction: float = Field(0.25, ge=0, lt=1)

    def base_model_key(self) -> tuple[str, str]:
        """(config key, model spec) of the model the student is trained from."""
        return "distill.base_model", self.base_model


class GenerativeStudentConfig(_DistillBase):
    """The relevance-labeler paper's student: a causal LM that emits the teacher's grade token."""

    kind: Literal["generative"] = "generative"
    base_model: str = "offline:smollm2-135m-instruct"
    epochs: int = Field(1, ge=1)
    max_steps: Optional[int] = Field(None, ge=1, description="stop after this many optimizer steps")
    micro_batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    zero_stage: int = Field(1, ge=0, le=3)
    # auto: DeepSpeed's bf16 where the GPU or CPU has native bf16 (labeler.hardware), else fp32.
    bf16: Union[bool, Literal["auto"]] = "auto"
    max_seq_len: int = Field(512, ge=32)
    # Weight of KL(teacher || student) over the grade tokens, added to the hard-label CE.
    kl_weight: float = Field(0.0, ge=0)
    # Train only the top N decoder layers and the final norm (None: all): a CPU-sized option,
    # since backward then stops N layers down.
    train_last_layers: Optional[int] = Field(None, ge=1)
    deepspeed: dict[str, Any] = Field(default_factory=dict, description="merged over the generated DS config")
    # Imbalanced grades (mostly 0s and 1s): weight the CE loss by inverse grade frequency, or
    # oversample the rarer grades to the most common one's count.
    balance: Literal["none", "reweight", "oversample"] = "none"


class CrossEncoderStudentConfig(_DistillBase):
    """The reranker paper's student; its model and optimiser settings are its own section."""

    kind: Literal["cross_encoder"]
    cross_encoder: CrossEncoderConfig = Field(default_factory=CrossEncoderConfig)

    def base_model_key(self) -> tuple[str, str]:
        return "distill.cross_encoder.base_model", self.cross_encoder.base_model


class BiEncoderStudentConfig(_DistillBase):
    """The bi-encoder student; its model and optimiser settings are its own section."""

    kind: Literal["bi_encoder"]
    bi_encoder: BiEncoderConfig = Field(default_factory=BiEncoderConfig)

    def base_model_key(self) -> tuple[str, str]:
        return "distill.bi_encoder.base_model", self.bi_encoder.base_model


def _student_kind(v) -> str:
    return (v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)) or "generative"


# One class per student kind (labeler.students.KINDS names its trainer); a key that belongs to
# another kind is an error, as any unknown key is.
DistillConfig = Annotated[
    Union[Annotated[GenerativeStudentConfig, Tag("generative")],
          Annotated[CrossEncoderStudentConfig, Tag("cross_encoder")],
          Annotated[BiEncoderStudentConfig, Tag("bi_encoder")]],
    Discriminator(_student_kind)]
STUDENT_KINDS = tuple(m.__metadata__[0].tag for m in get_args(get_args(DistillConfig)[0]))


class LabelConfig(_Strict):
    # None: the student from the distill stage of the same run.
    engine: Optional[EngineConfig] = None
    write_qrels: bool = True


class EvaluateConfig(_Strict):
    k: int = Field(10, ge=1)


class Config(_Strict):
    name: str = "labeler"
    seed: int = 13
    ray: RayConfig = Field(default_factory=RayConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    corpus: CorpusConfig
    synthesize: SynthesizeConfig
    mine: MineConfig = Field(default_factory=MineConfig)
    judge: JudgeConfig
    distill: DistillConfig = Field(default_factory=GenerativeStudentConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    # `--pairs` that name a Hugging Face dataset (split, subset, column mapping).
    pairs: DatasetInput = Field(default_factory=DatasetInput)

    # Where relative paths in the file are resolved from (the config file's folder's project root).
    base_dir: Optional[str] = Field(None, exclude=True)

    def resolve_path(self, p: str) -> str:
        """Relative paths are taken from where the command runs, then from the config's base."""
        path = Path(p).expanduser()
        if path.is_absolute() or "://" in p or path.exists() or not self.base_dir:
            return str(path) if "://" not in p else p
        return str(Path(self.base_dir) / path)

    def section_hash(self, *sections: str) -> str:
        """A stable fingerprint of config sections: a finished stage is reused only when it matches."""
        blob = {s: getattr(self, s).model_dump(mode="json") for s in sections}
        blob["seed"] = self.seed
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _from_overrides(loc: list, overrides: Optional[dict]) -> bool:
    """Whether an error's key path is one a --set override gave (not the YAML file)."""
    node = overrides
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _format_errors(path: str, err: ValidationError, overrides: Optional[dict] = None) -> str:
    lines = [f"{path}: invalid config ({err.error_count()} error{'s' if err.error_count() > 1 else ''})"]
    kinds = STUDENT_KINDS
    for e in err.errors():
        loc, kind = list(e["loc"]), None
        if loc[:1] == ["distill"] and len(loc) > 1 and loc[1] in kinds:
            kind = loc.pop(1)  # pydantic names the union member: say it as the kind instead
        key = ".".join(str(x) for x in loc) or "(top level)"
        if overrides and _from_overrides(loc, overrides):
            key = f"--set {key}"  # the command line's override, not the file
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = ("unknown key (not part of the config schema; check its spelling and section)" if kind is None
                   else f"unknown key for distill.kind={kind} (it may belong to another student kind)")
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown student kind {e['input'].get('kind')!r} (known: {', '.join(kinds)})" if isinstance(e.get("input"), dict) else msg
        elif e["type"] == "missing":
            msg = "required key is missing"
        got = e.get("input")
        suffix = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {key}: {msg}{suffix}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>", base_dir: Optional[str] = None,
                 overrides: Optional[dict] = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(source, e, overrides)) from None
    cfg.base_dir = base_dir
    return cfg


def load_config(path: str | Path, overrides: Optional[dict] = None) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e}") from None
    if overrides:
        data = merge_dicts(data or {}, overrides)
    # Configs live in <project>/configs/, and paths in them are relative to the project.
    base = path.resolve().parent.parent if path.resolve().parent.name == "configs" else path.resolve().parent
    return parse_config(data, str(path), str(base), overrides)


def merge_dicts(base: dict, over: dict) -> dict:
    """Nested dicts: `over` wins key by key (config overrides, DeepSpeed config overrides)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dotted_override(expr: str) -> dict:
    """`synthesize.seed_docs=10` -> nested dict, the value parsed as YAML."""
    if "=" not in expr:
        raise ConfigError(f"override {expr!r} must look like section.key=value")
    key, value = expr.split("=", 1)
    node: dict = {}
    cur = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = yaml.safe_load(value)
    return node
