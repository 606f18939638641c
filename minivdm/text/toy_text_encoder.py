"""A tiny CLIP text encoder for toy-world captions: transformers' ``CLIPTextModel``, randomly initialised.

CLIP: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", 2021,
arXiv:2103.00020. Stable Diffusion (Rombach et al., 2022, arXiv:2112.10752) conditions its U-Net on the
text encoder's last hidden states c = tau_theta(y), shape (B, L, hidden), through cross-attention
softmax(Q K^T / sqrt(d)) V with K = c W_K, V = c W_V. We keep that interface at toy size (L = 16,
hidden = 64) and reuse the transformers model unchanged; only the config is ours.

Parameter count of ``build_toy_text_encoder()``: 69,504 (about 272 KiB in float32).

The pooled output (``pooler_output``) is the final hidden state at the eos token. transformers picks
that position by argmax of the ids when ``eos_token_id == 2`` (a legacy rule that is right only when
eos has the highest id, as in OpenAI's vocabulary) and by the first occurrence of ``eos_token_id``
otherwise. Our eos id is 3, so the first-occurrence rule applies, and it is the right one for us.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerBase

from minivdm.text.toy_tokenizer import (
    BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, TOY_VOCABULARY, check_captions, encode_captions,
)

TOY_TEXT_CONFIG = CLIPTextConfig(
    vocab_size=len(TOY_VOCABULARY),
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=16,   # = the tokenizer's max_length: every caption fits, padded
    projection_dim=64,            # unused by CLIPTextModel (only CLIPTextModelWithProjection)
    attention_dropout=0.0,        # no dropout anywhere, so train() and eval() give the same outputs
    pad_token_id=TOY_VOCABULARY.index(PAD_TOKEN),
    bos_token_id=TOY_VOCABULARY.index(BOS_TOKEN),
    eos_token_id=TOY_VOCABULARY.index(EOS_TOKEN),
)
# The legacy argmax pooling (see the module docstring) would pick the highest word id, not eos.
assert TOY_TEXT_CONFIG.eos_token_id != 2


def build_toy_text_encoder(seed: int = 0) -> CLIPTextModel:
    """A randomly initialised toy CLIPTextModel; the same seed gives the same weights."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    # fork_rng: seed the initialisation without touching the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # A copy, so that editing model.config never edits the module-level TOY_TEXT_CONFIG.
        model = CLIPTextModel(copy.deepcopy(TOY_TEXT_CONFIG))
    return model.eval()


def encode_text(text_encoder: CLIPTextModel, tokenizer: PreTrainedTokenizerBase, captions: list[str],
                *, requires_grad: bool = False) -> torch.Tensor:
    """c = last_hidden_state, (B, L, hidden): what the SD U-Net cross-attends to.

    Runs under ``torch.no_grad()`` unless ``requires_grad=True`` (training the encoder jointly). Like
    diffusers' StableDiffusionPipeline, no attention mask is passed: CLIP attention is causal, so pad
    tokens (which come last) never change the states of the words before them.
    """
    if not isinstance(text_encoder, CLIPTextModel):
        raise TypeError(f"text_encoder must be a transformers.CLIPTextModel, got {type(text_encoder).__name__}")
    captions = check_captions(captions)
    input_ids, _ = encode_captions(tokenizer, captions)
    with torch.set_grad_enabled(requires_grad):
        return text_encoder(input_ids.to(text_encoder.device)).last_hidden_state


def save_toy_text_stack(folder: str | Path, tokenizer: PreTrainedTokenizerBase, text_encoder: CLIPTextModel) -> Path:
    """Write ``folder/tokenizer`` and ``folder/text_encoder`` (safetensors), as in a diffusers pipeline folder."""
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}")
    if not isinstance(text_encoder, CLIPTextModel):
        raise TypeError(f"text_encoder must be a transformers.CLIPTextModel, got {type(text_encoder).__name__}")
    folder = Path(folder)
    tokenizer.save_pretrained(folder / "tokenizer")
    text_encoder.save_pretrained(folder / "text_encoder")   # transformers 5 always writes safetensors
    return folder


def load_toy_text_stack(folder: str | Path) -> tuple[PreTrainedTokenizerBase, CLIPTextModel]:
    """(tokenizer, text_encoder) from a folder written by ``save_toy_text_stack`` (or a diffusers pipeline)."""
    folder = Path(folder)
    for sub in ("tokenizer", "text_encoder"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"{folder} must hold tokenizer/ and text_encoder/ subfolders "
                                    f"(written by save_toy_text_stack); {folder / sub} is missing")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True)
    return tokenizer, text_encoder.eval()
