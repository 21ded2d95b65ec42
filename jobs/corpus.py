"""Ray Job entrypoint: the pipeline up to and including corpus (or corpus alone with --only); finished stages at --out are skipped.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python jobs/corpus.py --config configs/gpu-cluster.yaml --out s3://BUCKET/runs/NAME
"""
import sys
from pathlib import Path

# The project root, not jobs/, goes first on sys.path: jobs/evaluate.py must not shadow the
# Hugging Face `evaluate` package, and the uploaded labeler/ must win over an installed one.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

if __name__ == "__main__":  # vLLM starts engines with spawn
    from labeler.remote import job_main

    sys.exit(job_main(sys.argv[1:], stage="corpus"))
