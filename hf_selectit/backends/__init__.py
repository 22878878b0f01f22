"""Backends other than transformers that turn our token ids into log-probabilities.

The engine (hf_selectit/engine.py) keeps texts, tokenisation, protected truncation and spans; a
backend only runs the model. `vllm.py`: the vLLM serving engine (`backend="vllm"`).
"""
