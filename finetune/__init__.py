"""appkit layer: finetune. Tune the packaged local models on a user's data and use them in the app.

* :mod:`finetune.data`: instruction rows (JSONL), mixtures, held-out splits, prompt rendering.
* :mod:`finetune.trainer`: LoRA (peft) and full fine-tuning with checkpoints, resume and Ctrl-C.
* :mod:`finetune.dpo`: preference pairs (feedback, files, automatic) and DPO with trl.
* :mod:`finetune.check`: before/after scores and a forgetting check on a retain set.
* :mod:`finetune.export`: merged or LoRA GGUF, llama.cpp quantization, catalogue registration.
* :mod:`finetune.cli`: ``appkit finetune ...``.

Nothing heavy (torch, peft, trl, gguf) is imported until it is used.
"""
