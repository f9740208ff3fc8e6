#!/bin/sh
# Every task's eval set with the installed GGUF models, one model per run so each result is saved
# as soon as it is done (see benchmarks/RESULTS_tasks.md). Run from the repository root:
#   sh benchmarks/tasks/run_all.sh
set -u
B=benchmarks/tasks
run() { name=$1; shift; echo "== $name"; .venv/bin/appkit models compare --profile $B/appkit.toml \
    --json "$@" > $B/results/$name.json 2> $B/results/$name.log; cat $B/results/$name.json; }
run extract-smollm2 --task extract --eval $B/extract_eval.jsonl --models smollm2-135m
run classify-qwen --task classify --eval $B/classify_eval.jsonl --models qwen2.5-coder-0.5b
run extract-gemma --task extract --eval $B/extract_eval.jsonl --models gemma3-270m
run translate-smollm2 --task translate --eval $B/translate_eval.jsonl --models smollm2-135m
run summarize-smollm2 --task summarize --eval $B/summarize_eval.jsonl --models smollm2-135m
run extract-qwen --task extract --eval $B/extract_eval.jsonl --models qwen2.5-coder-0.5b
run code-qwen --task code --eval $B/code_eval.jsonl --models qwen2.5-coder-0.5b
run translate-qwen --task translate --eval $B/translate_eval.jsonl --models qwen2.5-coder-0.5b
run summarize-qwen --task summarize --eval $B/summarize_eval.jsonl --models qwen2.5-coder-0.5b
run classify-smollm2 --task classify --eval $B/classify_eval.jsonl --models smollm2-135m
