"""Text conditioning for the toy world: a word-level tokenizer and a tiny transformers CLIPTextModel,
saved in the ``tokenizer/`` + ``text_encoder/`` layout of a diffusers Stable Diffusion folder."""

from minivdm.text.toy_tokenizer import (
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    TOY_VOCABULARY,
    TOY_WORDS,
    UNK_TOKEN,
    build_toy_tokenizer,
    caption_words,
    check_captions,
    encode_captions,
)
from minivdm.text.toy_text_encoder import (
    TOY_TEXT_CONFIG,
    build_toy_text_encoder,
    encode_text,
    load_toy_text_stack,
    save_toy_text_stack,
)

__all__ = [
    "BOS_TOKEN", "EOS_TOKEN", "PAD_TOKEN", "SPECIAL_TOKENS", "TOY_VOCABULARY", "TOY_WORDS", "UNK_TOKEN",
    "build_toy_tokenizer", "caption_words", "check_captions", "encode_captions",
    "TOY_TEXT_CONFIG", "build_toy_text_encoder", "encode_text", "load_toy_text_stack", "save_toy_text_stack",
]
