"""Named hardware profiles: the numbers behind the simulated engine's timing and capacity.

A profile is one model on one accelerator. Step time is `decode_step_base + decode_step_per_seq * batch
+ prefill_per_token * prompt tokens in the step`; KV capacity is in tokens. Each profile's docstring
line says where its numbers come from.
"""

from __future__ import annotations

from dataclasses import dataclass


class UnknownProfile(ValueError):
    """A profile name that is not in PROFILES; the message lists the known ones."""


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    name: str
    max_num_seqs: int  # vLLM --max-num-seqs: sequences in one batch
    max_num_batched_tokens: int  # vLLM's per-step token budget (chunked prefill)
    kv_capacity_tokens: int  # KV-cache slots, in tokens
    max_model_len: int  # prompt + output may not exceed this
    prefill_per_token: float  # seconds of step time per prompt token computed
    decode_step_base: float  # a: seconds per engine step whatever the batch
    decode_step_per_seq: float  # b: extra seconds per sequence in the batch
    kv_transfer_base: float = 0.002  # P/D: seconds to start pulling a prompt's KV from a prefill pod
    kv_transfer_per_token: float = 5e-6  # P/D: seconds per prompt token of KV pulled
    description: str = ""

    def __post_init__(self) -> None:
        if min(self.max_num_seqs, self.max_num_batched_tokens, self.kv_capacity_tokens, self.max_model_len) < 1:
            raise ValueError(f"profile {self.name}: sizes must be at least 1")
        if self.max_num_seqs > self.max_num_batched_tokens:
            raise ValueError(f"profile {self.name}: max_num_seqs must not exceed max_num_batched_tokens")
        if self.max_model_len > self.kv_capacity_tokens:
            raise ValueError(f"profile {self.name}: max_model_len must fit in the KV cache")
        if self.decode_step_base <= 0 or min(self.prefill_per_token, self.decode_step_per_seq) < 0:
            raise ValueError(f"profile {self.name}: step costs must be positive")

    def step_seconds(self, batch: int, prefill_tokens: int) -> float:
        return self.decode_step_base + self.decode_step_per_seq * batch + self.prefill_per_token * prefill_tokens

    def kv_transfer_seconds(self, prompt_tokens: int) -> float:
        return self.kv_transfer_base + self.kv_transfer_per_token * prompt_tokens


# Llama-3-8B in bf16 on one A100-80GB with vLLM defaults. KV: 32 layers x 8 KV heads x 128 dims x 2 (K, V)
# x 2 bytes = 128 KiB per token; 0.9 x 80 GiB minus 15 GiB of weights and ~5 GiB of activations leaves
# ~52 GiB = 425,984 tokens. Decode reads 16 GB of weights per step at ~1.7 TB/s (9.5 ms) plus ~80 us per
# sequence (30 ms at 256). Prefill: 16 GFLOP per token at ~170 TFLOPS effective = 93 us per token.
# KV transfer: 128 KiB per token over ~25 GB/s RDMA.
A100_LLAMA3_8B = HardwareProfile(
    name="A100-80G-llama3-8b",
    max_num_seqs=256,
    max_num_batched_tokens=8192,
    kv_capacity_tokens=425_984,
    max_model_len=8192,
    prefill_per_token=93e-6,
    decode_step_base=0.0095,
    decode_step_per_seq=80e-6,
    kv_transfer_base=0.002,
    kv_transfer_per_token=5.2e-6,
    description="Llama-3-8B bf16 on one A100-80GB (vLLM defaults)",
)

# Qwen2.5-0.5B-Instruct on one CPU, as in KServe's KEDA tutorial (the seed's `hey -z 30s -c 5`, max_tokens
# 100: 23 responses in 33 s, 6.9 s average, so ~70 ms per step at batch 5). KV: 24 layers x 2 KV heads x 64
# dims x 2 x 2 bytes = 12 KiB per token in the default 4 GiB VLLM_CPU_KVCACHE_SPACE = 349,525 tokens.
CPU_QWEN_05B = HardwareProfile(
    name="cpu-qwen2.5-0.5b",
    max_num_seqs=256,
    max_num_batched_tokens=4096,
    kv_capacity_tokens=349_525,
    max_model_len=32_768,
    prefill_per_token=2e-3,
    decode_step_base=0.040,
    decode_step_per_seq=0.0065,
    kv_transfer_base=0.005,
    kv_transfer_per_token=2e-5,
    description="Qwen2.5-0.5B-Instruct on one CPU (KServe KEDA tutorial)",
)

# Small on purpose: a pod saturates at 8 running requests and its KV cache (16k tokens) fills with a
# handful of long ones, so a laptop demo with 8-16 concurrent clients visibly queues and scales.
DEMO = HardwareProfile(
    name="demo",
    max_num_seqs=8,
    max_num_batched_tokens=2048,
    kv_capacity_tokens=16_384,
    max_model_len=4096,
    prefill_per_token=2e-4,
    decode_step_base=0.015,
    decode_step_per_seq=0.004,
    kv_transfer_base=0.005,
    kv_transfer_per_token=2e-5,
    description="laptop demo: saturates at 8 concurrent requests",
)

PROFILES: dict[str, HardwareProfile] = {p.name: p for p in (A100_LLAMA3_8B, CPU_QWEN_05B, DEMO)}
DEFAULT_PROFILE = A100_LLAMA3_8B.name


def profile_named(name: str) -> HardwareProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownProfile(f"unknown hardware profile {name!r}; known: {', '.join(PROFILES)}") from None
