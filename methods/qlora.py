"""QLoRA: LoRA adapters (peft) over 4-bit NormalFloat (NF4) frozen base weights (bitsandbytes).

The model is quantized as a user would by hand (we build models from a config with random
init, so transformers' from_pretrained quantization_config does not apply): each Linear that
LoRA adapts (the attention and MLP Linears of the repeated layers, or options.target_modules)
becomes a bitsandbytes Linear4bit whose weight is an NF4 Params4bit, 64-element blocks, each with a
float32 absmax; with double quantization (the paper's default) those absmax values are
themselves quantized to 8 bits in blocks of 256 with one float32 scale per block. Embeddings,
norms, the LM head and a task head stay in the precision's weight dtype (and, by default,
trainable: train_non_lora, as in `lora`); the 4-bit layers compute in its compute dtype (under
bf16-mixed, BF16: the dtype autocast hands them).

bitsandbytes 0.50.2 runs this on CPU: quantization in torch (its default backend), the
dequantization in its CPU library, and the matmul as dequantize-then-linear, forward and
backward. One CPU path is switched off: on CPUs with AVX512-BF16 a Linear4bit in eval mode
repacks its weight into an inference layout and computes in bfloat16 from then on, so the
evaluation would not run the trained arithmetic and the weight bytes would change mid-run.
"""

from dataclasses import dataclass

import bitsandbytes
import torch

from methods.base import Method, linear_layers, options_rank
from methods.blocks import block_linear_names
from methods.lora import LoraOptions, train_adapted, wrap_with_lora

NF4_BLOCK_SIZE = 64
"""Elements per absmax (the QLoRA paper's and bitsandbytes' default)."""


@dataclass(frozen=True)
class QloraOptions(LoraOptions):
    double_quant: bool = True
    """Quantize the absmax constants too (8-bit, blocks of 256): about 0.37 bits per weight less."""


def quantize_to_nf4(model: torch.nn.Module, options: QloraOptions, workload, compute_dtype: torch.dtype):
    """Replace the target Linear layers of `model` by NF4 Linear4bit layers, quantized on each
    weight's device."""
    suffixes = options.target_modules or block_linear_names(model)
    targets = linear_layers(model, suffixes)  # as peft matches target_modules
    if not targets:
        raise ValueError(f"options.target_modules {list(suffixes)} matches no Linear layer of the model")
    if options.double_quant and "dynamic" not in bitsandbytes.functional.name2qmap:
        # bitsandbytes caches the double quantization's 8-bit map on the device of the first
        # weight it quantizes: preflight's meta model would leave a map without data to every
        # later run in this process. Made here, it is made on the CPU (the device of its maps).
        bitsandbytes.functional.name2qmap["dynamic"] = bitsandbytes.functional.create_dynamic_map()
    for name, linear in targets.items():
        quantized = bitsandbytes.nn.Linear4bit(
            linear.in_features, linear.out_features, bias=linear.bias is not None, compute_dtype=compute_dtype,
            compress_statistics=options.double_quant, quant_type="nf4", device="meta")
        quantized.support_avx512bf16_for_cpu = False  # see the module docstring
        # Quantized here as Params4bit quantizes when moved to a device (the same call), so that
        # the traced estimate can stand in for the packed weight (estimates/traced.py).
        packed, quant_state = bitsandbytes.functional.quantize_4bit(
            linear.weight.data.contiguous(), blocksize=NF4_BLOCK_SIZE, compress_statistics=options.double_quant,
            quant_type="nf4")
        quantized.weight = bitsandbytes.nn.Params4bit(
            packed, requires_grad=False, quant_state=quant_state, blocksize=NF4_BLOCK_SIZE,
            compress_statistics=options.double_quant, quant_type="nf4", bnb_quantized=True, module=quantized)
        if linear.bias is not None:
            quantized.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, quantized)


def prepare(model, spec, options, workload):
    quantize_to_nf4(model, options, workload, compute_dtype=spec.policy.compute_dtype)
    return train_adapted(wrap_with_lora(model, options, workload), spec)


METHOD = Method("qlora", prepare, QloraOptions,
                "QLoRA: LoRA via peft over NF4 4-bit frozen base weights (bitsandbytes Linear4bit)", rank=options_rank)
