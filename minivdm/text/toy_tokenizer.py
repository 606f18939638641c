"""A word-level tokenizer for toy-world captions, built locally with the ``tokenizers`` library.

Toy-world captions use a closed vocabulary of about twenty words ("a red circle moving left and a blue
square standing still"), so one id per word is enough: no BPE merges to learn, no model hub. The
tokenizer mirrors the layout CLIP's tokenizer gives Stable Diffusion's text encoder:

    "a red circle"  ->  <|startoftext|> a red circle <|endoftext|> <pad> <pad> ...   (max_length ids)

Ids: 0 ``<pad>``, 1 ``<unk>``, 2 ``<|startoftext|>`` (bos), 3 ``<|endoftext|>`` (eos), then the words.
CLIP pads with its eos token; we use a dedicated ``<pad>`` instead so that every sequence holds exactly
one eos (the pooled token, see ``toy_text_encoder``) and padding is visible at a glance (id 0).
Words outside the vocabulary become ``<unk>``; text is lower-cased and split on whitespace and
punctuation first.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from minivdm.toyworld import MOTIONS, PALETTE, SHAPES, ToyObject, caption_for

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)


def caption_words() -> tuple[str, ...]:
    """Every word ``caption_for`` can write, sorted.

    Found by captioning every (colour, shape, motion) and a two-object scene with ``caption_for``
    itself, so that a change of wording in the toy world changes the vocabulary with it.
    """
    words = set()
    for colour in PALETTE:
        for shape in SHAPES:
            for motion in MOTIONS:
                obj = ToyObject(colour=colour, shape=shape, motion=motion, radius=5, start=(16.0, 16.0))
                for with_motion in (True, False):
                    words.update(caption_for([obj, obj], with_motion=with_motion).split())
    return tuple(sorted(words))


TOY_WORDS: tuple[str, ...] = caption_words()
# The id of a token is its index here; the special tokens come first so their ids never move.
TOY_VOCABULARY: tuple[str, ...] = SPECIAL_TOKENS + TOY_WORDS


def build_toy_tokenizer(max_length: int = 16, *, words: tuple[str, ...] | list[str] = TOY_WORDS
                        ) -> PreTrainedTokenizerFast:
    """The toy tokenizer: WordLevel over ``SPECIAL_TOKENS + words``, sequences padded to ``max_length``.

    ``max_length`` counts bos and eos: the longest default caption (two moving objects) is 11 words,
    13 tokens. Longer text is truncated and still ends with eos. ``words`` exists for tests that
    remove a word; leave it at the default otherwise.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3:
        raise ValueError(f"max_length must be an int >= 3 (bos, one word, eos), got {max_length!r}")
    vocabulary = SPECIAL_TOKENS + tuple(words)
    token_to_id = {token: i for i, token in enumerate(vocabulary)}
    if len(token_to_id) != len(vocabulary):
        raise ValueError(f"words must be distinct and must not repeat {SPECIAL_TOKENS}, got {list(words)}")

    tokenizer = Tokenizer(models.WordLevel(vocab=token_to_id, unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, token_to_id[BOS_TOKEN]), (EOS_TOKEN, token_to_id[EOS_TOKEN])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN,
        model_max_length=max_length,
        # CLIPTextModel takes no token_type_ids; without this list the tokenizer would return them.
        model_input_names=["input_ids", "attention_mask"],
    )


def check_captions(captions, name: str = "captions") -> list[str]:
    """A list (or tuple) of str; a lone str is refused, since it would be read as a list of characters."""
    if not isinstance(captions, (list, tuple)):
        raise TypeError(f"{name} must be a list of str (one caption per batch item), got {type(captions).__name__}")
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise TypeError(f"{name} must be a list of str, got {type(caption).__name__} at index {i}")
    if len(captions) == 0:
        raise ValueError(f"{name} must be a non-empty list of str, got an empty {type(captions).__name__}")
    return list(captions)


def encode_captions(tokenizer: PreTrainedTokenizerFast, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, L) long with L = tokenizer.model_max_length.

    Padded and truncated exactly as diffusers' StableDiffusionPipeline tokenizes a prompt.
    """
    captions = check_captions(captions)
    batch = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                      truncation=True, return_tensors="pt")
    return batch.input_ids, batch.attention_mask
