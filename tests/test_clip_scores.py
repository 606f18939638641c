"""CLIP scores: the aesthetic head is LAION's layout (published weights load by name), a CLIP folder and a
head round-trip through load_clip_scorer to exactly transformers' own embeddings, preprocessing is
CLIPImageProcessor's, embeddings are unit norm, key frames are the first, middle and last, and bad
inputs or files are refused with messages that name what was expected."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPConfig, CLIPModel

from minivdm.curation.clip_scores import (
    OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, AestheticHead, ClipScorer, aesthetic_head_from_state_dict, clip_pixel_values,
    key_frames, load_clip_scorer,
)
from minivdm.text import TOY_TEXT_CONFIG, build_toy_tokenizer


def laion_predictor(input_size: int) -> nn.Sequential:
    """The ``layers`` of LAION's improved-aesthetic-predictor MLP, as published (simple_inference.py)."""
    return nn.Sequential(
        nn.Linear(input_size, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
    )


def laion_state_dict(input_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random head with the published key names (``layers.0.weight`` ...), as a converted .pth would hold."""
    torch.manual_seed(seed)
    return {f"layers.{key}": value for key, value in laion_predictor(input_size).state_dict().items()}


def test_aesthetic_head_has_the_laion_keys_and_shapes():
    head = AestheticHead(768)
    published = laion_state_dict(768)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == {k: tuple(v.shape) for k, v in published.items()}
    assert list(head.state_dict()) == list(published)
    assert [type(m) for m in head.layers] == [type(m) for m in laion_predictor(768)]
    assert [head.layers[i].p for i in (1, 3, 5)] == [0.2, 0.2, 0.1]


def test_published_weights_load_by_name_and_give_the_published_outputs():
    published = laion_state_dict(768, seed=1)
    reference = laion_predictor(768).eval()
    reference.load_state_dict({key.removeprefix("layers."): value for key, value in published.items()})
    head = aesthetic_head_from_state_dict(published)
    embeddings = F.normalize(torch.randn(5, 768), dim=-1)
    with torch.no_grad():
        assert torch.allclose(head(embeddings), reference(embeddings).squeeze(1), atol=1e-6)
    assert head.hidden == (1024, 128, 64, 16) and head.embedding_dim == 768


def test_aesthetic_head_refuses_other_layouts():
    with pytest.raises(ValueError, match="4 positive ints"):
        AestheticHead(64, hidden=(32, 16, 8))
    with pytest.raises(ValueError, match=r"\(N, D\) with D = 64"):
        AestheticHead(64, hidden=(8, 8, 8, 8))(torch.randn(2, 32))
    renamed = {key.replace("layers.", "mlp."): value for key, value in laion_state_dict(64).items()}
    with pytest.raises(ValueError, match="layers.0.weight"):
        aesthetic_head_from_state_dict(renamed)
    extra = {**laion_state_dict(64), "layers.9.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="layers.9.weight"):
        aesthetic_head_from_state_dict(extra)


def tiny_clip(seed: int = 0, image_size: int = 32, projection_dim: int = 24) -> CLIPModel:
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=TOY_TEXT_CONFIG.to_dict(),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=64,  # noqa: C408
                           num_hidden_layers=2, num_attention_heads=4),
        projection_dim=projection_dim,
    )
    return CLIPModel(config).eval()


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny random CLIP saved like a Hugging Face CLIP folder, with non-default preprocessing, and a head."""
    folder = tmp_path_factory.mktemp("tiny_clip")
    model = tiny_clip()
    model.save_pretrained(folder, safe_serialization=True)
    build_toy_tokenizer().save_pretrained(folder)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "crop_size": {"height": 32, "width": 32},
        "size": {"shortest_edge": 32}, "image_mean": list(mean), "image_std": list(std)}))
    save_file(laion_state_dict(24, seed=2), str(folder / "head.safetensors"))
    return folder, model, mean, std


def test_load_clip_scorer_round_trip_matches_transformers(clip_folder):
    folder, model, mean, std = clip_folder
    scorer = load_clip_scorer(folder, folder / "head.safetensors")
    assert scorer.image_size == 32 and scorer.image_mean == mean and scorer.image_std == std
    frames = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pixel_values = ((frames + 1) / 2 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = F.normalize(model.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
        caption = "a red circle moving left"
        ids = scorer.tokenizer([caption], padding="max_length", max_length=16, return_tensors="pt")
        text = F.normalize(model.get_text_features(input_ids=ids.input_ids, attention_mask=ids.attention_mask).pooler_output, dim=-1)
        reference_head = laion_predictor(24).eval()
        reference_head.load_state_dict({k.removeprefix("layers."): v for k, v in laion_state_dict(24, seed=2).items()})
        expected_aesthetic = reference_head(expected).mean().item()
    embeddings = scorer.image_embeddings(frames)
    assert (embeddings - expected).abs().max() <= 1e-5
    assert abs(scorer.text_similarity(frames, caption) - (expected @ text.T).mean().item()) <= 1e-5
    assert abs(scorer.aesthetic(frames) - expected_aesthetic) <= 1e-5


def test_image_embeddings_are_unit_norm_and_inputs_are_checked(clip_folder):
    folder, _, _, _ = clip_folder
    scorer = load_clip_scorer(folder)
    frames = torch.rand(3, 3, 40, 48) * 2 - 1   # not the model's size: resized and cropped first
    norms = scorer.image_embeddings(frames).norm(dim=-1)
    assert torch.allclose(norms, torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        scorer.image_embeddings(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        scorer.image_embeddings(torch.zeros(2, 4, 32, 32))
    with pytest.raises(TypeError, match=r"\(N, 3, H, W\).*|floating"):
        scorer.image_embeddings(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="no aesthetic_head"):
        scorer.aesthetic(frames)
    with pytest.raises(TypeError, match="caption must be a str"):
        scorer.text_similarity(frames, ["a red circle"])
    with pytest.raises(ValueError, match="takes 768-d embeddings"):
        ClipScorer(scorer.model, scorer.tokenizer, AestheticHead(768))


def test_key_frames_are_first_middle_and_last():
    clip = torch.arange(9, dtype=torch.float32).view(1, 9, 1, 1).expand(3, 9, 4, 5)   # frame t holds t
    frames = key_frames(clip)
    assert frames.shape == (3, 3, 4, 5)
    assert frames[:, 0, 0, 0].tolist() == [0.0, 4.0, 8.0]
    assert key_frames(clip[:, :1])[:, 0, 0, 0].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"\(C, T, H, W\) with C = 3"):
        key_frames(clip.movedim(0, 1))     # (T, C, H, W) by mistake


def test_preprocessing_is_what_clip_image_processor_does():
    """Shortest side to the model's size (bicubic), centre crop, normalise: close to transformers' own
    processor (which rounds to uint8 and resizes with PIL, hence the small tolerance)."""
    pytest.importorskip("PIL")
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                   image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD))
    # a smooth image with structure everywhere, so a crop in the wrong place shows
    y, x = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 80), indexing="ij")
    image = torch.stack([torch.sin(6 * x) * y, torch.cos(5 * y), x * y]) * 0.9
    uint8 = ((image + 1) * 127.5).round().to(torch.uint8)
    frames = uint8.float()[None] / 127.5 - 1
    expected = processor(images=uint8.permute(1, 2, 0).numpy(), return_tensors="pt").pixel_values
    ours = clip_pixel_values(frames, 32)
    assert ours.shape == expected.shape == (1, 3, 32, 32)
    difference = (ours - expected).abs()
    assert difference.mean() < 0.01 and difference.max() < 0.05, (difference.mean(), difference.max())


def test_only_safetensors_are_read(tmp_path, clip_folder):
    folder, _, _, _ = clip_folder
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="pickle"):
        load_clip_scorer(pickled)
    torch.save(laion_state_dict(24), tmp_path / "head.pth")
    with pytest.raises(ValueError, match="pickle"):
        load_clip_scorer(folder, tmp_path / "head.pth")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_clip_scorer("nobody/no-such-clip-model-here")
