"""The toy text stack: the word-level tokenizer covers every toy-world caption, tells captions apart and
follows CLIP's bos/eos layout; the tiny CLIPTextModel pools at eos, sees one changed word, round-trips
through a diffusers-style folder, and gives exactly what StableDiffusionPipeline.encode_prompt gives."""

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from minivdm.text import (
    TOY_TEXT_CONFIG, TOY_VOCABULARY, TOY_WORDS, build_toy_text_encoder, build_toy_tokenizer, encode_captions,
    encode_text, load_toy_text_stack, save_toy_text_stack,
)
from minivdm.toyworld import MOTIONS, PALETTE, SHAPES, generate, generate_images

BOS, EOS, PAD, UNK = 2, 3, 0, 1


@pytest.fixture(scope="module")
def captions():
    return generate(2000, seed=0).captions + generate_images(2000, seed=1).captions


@pytest.fixture(scope="module")
def tokenizer():
    return build_toy_tokenizer()


@pytest.fixture(scope="module")
def text_encoder():
    return build_toy_text_encoder(seed=0)


def unknown_words(tokenizer, captions) -> set[str]:
    """The words of ``captions`` that the tokenizer maps to <unk>."""
    return {word for caption in captions for word in caption.split()
            if tokenizer.convert_tokens_to_ids(word) == tokenizer.unk_token_id}


def test_vocabulary_covers_every_toy_world_caption(tokenizer, captions):
    assert unknown_words(tokenizer, captions) == set()
    input_ids, attention_mask = encode_captions(tokenizer, captions)
    assert not (input_ids == UNK).any()
    # Nothing is truncated: every caption keeps all its words plus bos and eos.
    assert attention_mask.sum(1).tolist() == [len(c.split()) + 2 for c in captions]
    assert set(PALETTE) | set(SHAPES) | set(MOTIONS) - {"still"} <= set(TOY_WORDS)
    assert len(tokenizer) == len(TOY_VOCABULARY) == TOY_TEXT_CONFIG.vocab_size


def test_coverage_check_catches_a_missing_word(captions):
    """The coverage test has teeth: drop one colour from the vocabulary and it is reported."""
    smaller = build_toy_tokenizer(words=[w for w in TOY_WORDS if w != "magenta"])
    assert unknown_words(smaller, captions) == {"magenta"}


def test_distinct_captions_get_distinct_ids(tokenizer, captions):
    unique = sorted(set(captions))
    input_ids, _ = encode_captions(tokenizer, unique)
    assert len({tuple(row.tolist()) for row in input_ids}) == len(unique) > 300


def test_bos_eos_template_padding_and_truncation(tokenizer):
    input_ids, attention_mask = encode_captions(tokenizer, ["a red circle", "A RED Circle", "a red " * 20])
    assert input_ids.dtype == torch.long and input_ids.shape == (3, 16)
    red, circle = (TOY_VOCABULARY.index(w) for w in ("red", "circle"))
    assert input_ids[0].tolist() == [BOS, 4, red, circle, EOS] + [PAD] * 11
    assert attention_mask[0].tolist() == [1] * 5 + [0] * 11
    assert torch.equal(input_ids[1], input_ids[0])                # lower-cased before lookup
    assert input_ids[2, 0] == BOS and input_ids[2, -1] == EOS     # truncated, still closed by eos
    assert attention_mask[2].all()


def test_unknown_word_maps_to_unk(tokenizer):
    input_ids, _ = encode_captions(tokenizer, ["a purple blob, moving left"])
    assert input_ids[0, :8].tolist() == [BOS, 4, UNK, UNK, UNK, TOY_VOCABULARY.index("moving"),
                                         TOY_VOCABULARY.index("left"), EOS]


@pytest.mark.parametrize("bad, message", [("a red circle", "list of str"), (["a red circle", 3], "index 1")])
def test_bad_captions_raise_type_error_naming_the_layout(tokenizer, text_encoder, bad, message):
    with pytest.raises(TypeError, match=message):
        encode_captions(tokenizer, bad)
    with pytest.raises(TypeError, match=message):
        encode_text(text_encoder, tokenizer, bad)


def test_pooled_output_is_taken_at_the_eos_position(tokenizer, text_encoder):
    captions = ["a red circle", "a yellow square moving up and a cyan triangle standing still"]
    input_ids, _ = encode_captions(tokenizer, captions)
    with torch.no_grad():
        out = text_encoder(input_ids)
    eos_position = (input_ids == EOS).int().argmax(1)
    assert eos_position.tolist() == [4, 12]
    assert torch.equal(out.pooler_output, out.last_hidden_state[torch.arange(2), eos_position])
    # The legacy rule (argmax of ids) would pool at a word: eos is not our highest id.
    assert (input_ids.argmax(1) != eos_position).all()


def test_one_changed_colour_word_changes_the_states_from_that_word_on(tokenizer, text_encoder):
    c = encode_text(text_encoder, tokenizer, ["a red circle", "a blue circle"])
    assert c.shape == (2, 16, TOY_TEXT_CONFIG.hidden_size) and not c.requires_grad
    assert torch.equal(c[0, :2], c[1, :2])                  # causal: "<bos> a" cannot see the colour
    assert (c[0, 2] - c[1, 2]).abs().max() > 1e-3           # the colour word itself
    assert (c[0, 3] - c[1, 3]).abs().max() > 1e-3           # "circle" has seen the colour


def test_encoder_is_tiny_seeded_and_trainable(tokenizer):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b, other = build_toy_text_encoder(0), build_toy_text_encoder(0), build_toy_text_encoder(1)
    assert torch.equal(torch.rand(1), expected_next)        # the caller's random stream is untouched
    n_parameters = sum(p.numel() for p in a.parameters())
    print(f"toy text encoder: {n_parameters:,} parameters, {4 * n_parameters / 2**10:.0f} KiB float32")
    assert n_parameters == 69_504 and 4 * n_parameters < 2**20   # the count in the module docstring
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.embeddings.token_embedding.weight, other.embeddings.token_embedding.weight)
    encode_text(a, tokenizer, ["a red circle"], requires_grad=True).sum().backward()
    assert a.embeddings.token_embedding.weight.grad[TOY_VOCABULARY.index("red")].abs().sum() > 0


def test_save_load_round_trip(tmp_path, tokenizer, text_encoder, captions):
    save_toy_text_stack(tmp_path, tokenizer, text_encoder)
    assert (tmp_path / "text_encoder" / "model.safetensors").is_file()
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    loaded_tokenizer, loaded_encoder = load_toy_text_stack(tmp_path)
    sample = sorted(set(captions))[:64] + ["a purple blob"]
    assert torch.equal(encode_captions(loaded_tokenizer, sample)[0], encode_captions(tokenizer, sample)[0])
    assert torch.equal(encode_text(loaded_encoder, loaded_tokenizer, sample), encode_text(text_encoder, tokenizer, sample))
    for cls in (AutoTokenizer, PreTrainedTokenizerFast):
        again = cls.from_pretrained(tmp_path / "tokenizer", local_files_only=True)
        assert again.model_max_length == 16 and torch.equal(encode_captions(again, sample)[0],
                                                            encode_captions(tokenizer, sample)[0])
    with pytest.raises(FileNotFoundError, match="tokenizer/ and text_encoder/"):
        load_toy_text_stack(tmp_path / "tokenizer")


def test_stable_diffusion_pipeline_encodes_prompts_exactly_like_encode_text(tmp_path, tokenizer, text_encoder):
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TOY_TEXT_CONFIG.hidden_size, attention_head_dim=8)
    vae = diffusers.AutoencoderKL(block_out_channels=(32,), down_block_types=("DownEncoderBlock2D",),
                                  up_block_types=("UpDecoderBlock2D",), norm_num_groups=32)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=diffusers.DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    prompts = ["a red circle moving left and a blue square standing still", "a green triangle"]
    prompt_embeds, _ = pipe.encode_prompt(prompts, "cpu", 1, do_classifier_free_guidance=False)
    assert torch.equal(prompt_embeds, encode_text(text_encoder, tokenizer, prompts))
    # A whole pipeline folder written by diffusers is readable by load_toy_text_stack.
    pipe.save_pretrained(tmp_path)
    loaded_tokenizer, loaded_encoder = load_toy_text_stack(tmp_path)
    assert torch.equal(encode_text(loaded_encoder, loaded_tokenizer, prompts), prompt_embeds)
