"""CLIP scores for data curation: an aesthetic score and the text-image similarity of a clip.

Stable Video Diffusion (Blattmann et al., "Stable Video Diffusion: Scaling Latent Video Diffusion Models
to Large Datasets", 2023, arXiv:2311.15127, Sec. 3.1 and App. C) annotates every clip with CLIP
embeddings of three key frames (the first, middle and last) and filters on two scores:

    e_k = E_img(frame_k) / ||E_img(frame_k)||               unit CLIP image embedding of key frame k
    aesthetic(clip)  = 1/3 sum_k  MLP(e_k)                   LAION "improved aesthetic predictor" head
    similarity(clip) = 1/3 sum_k  <e_k, u>,  u = E_txt(caption) / ||E_txt(caption)||

The aesthetic head (Schuhmann et al., LAION-Aesthetics V2, github.com/christophschuhmann/
improved-aesthetic-predictor) is a small MLP trained to regress human 1-10 ratings from the unit
CLIP ViT-L/14 image embedding (d = 768)::

    layers.0 Linear(d, 1024) -> Dropout(0.2) -> layers.2 Linear(1024, 128) -> Dropout(0.2)
    -> layers.4 Linear(128, 64) -> Dropout(0.1) -> layers.6 Linear(64, 16) -> layers.7 Linear(16, 1)

``AestheticHead`` keeps that layout and those module names, so the published weights load by name once
converted to safetensors (their ``.pth`` is a pickle, which minivdm refuses to read)::

    state = torch.load("sac+logos+ava1-l14-linearMSE.pth", map_location="cpu", weights_only=True)
    safetensors.torch.save_file(state, "aesthetic_head.safetensors")

The CLIP networks themselves are transformers' ``CLIPModel``; only the preprocessing is ours: frames in
[-1, 1] are mapped to [0, 1], resized (shortest side to the model's image size, bicubic, then a centre
crop, as ``CLIPImageProcessor`` does) and normalised with the model's mean and std, all in torch, with
no PIL round trip. The caption comes from elsewhere (a captioning model in SVD; the toy world's own
captions here): captioning is not part of this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from transformers import CLIPModel, PreTrainedTokenizerBase

from minivdm.validation import check_tensor

# OpenAI CLIP's preprocessing (transformers.utils.constants.OPENAI_CLIP_MEAN / _STD), in [0, 1] units.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# The published LAION head: hidden sizes and dropout rates, in order.
LAION_HIDDEN = (1024, 128, 64, 16)
LAION_DROPOUT = (0.2, 0.2, 0.1)
FRAMES_LAYOUT = "(N, 3, H, W) with values in [-1, 1]"
AESTHETIC_HEAD_FILE = "aesthetic_head.safetensors"


class AestheticHead(nn.Module):
    """The LAION aesthetic predictor: unit CLIP image embeddings (N, D) -> scores (N,).

    ``hidden`` gives the four hidden widths (1024, 128, 64, 16 in the published head) and ``dropout``
    the rates after the first three Linear layers; the module names (``layers.0``, ``.2``, ``.4``,
    ``.6``, ``.7``) never change, so a published state dict loads by name.
    """

    def __init__(self, embedding_dim: int, hidden: tuple[int, ...] = LAION_HIDDEN,
                 dropout: tuple[float, ...] = LAION_DROPOUT):
        super().__init__()
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim <= 0:
            raise ValueError(f"embedding_dim must be a positive int (768 for CLIP ViT-L/14), got {embedding_dim!r}")
        hidden, dropout = tuple(hidden), tuple(dropout)
        if len(hidden) != 4 or any(isinstance(h, bool) or not isinstance(h, int) or h <= 0 for h in hidden):
            raise ValueError(f"hidden must be 4 positive ints (the LAION layout has 4 hidden layers, "
                             f"{LAION_HIDDEN}), got {hidden}")
        if len(dropout) != 3 or any(not 0 <= p < 1 for p in dropout):
            raise ValueError(f"dropout must be 3 rates in [0, 1) (after the first three Linear layers, "
                             f"{LAION_DROPOUT} in LAION's head), got {dropout}")
        self.embedding_dim, self.hidden, self.dropout = embedding_dim, hidden, dropout
        self.layers = nn.Sequential(
            nn.Linear(embedding_dim, hidden[0]),
            nn.Dropout(dropout[0]),
            nn.Linear(hidden[0], hidden[1]),
            nn.Dropout(dropout[1]),
            nn.Linear(hidden[1], hidden[2]),
            nn.Dropout(dropout[2]),
            # no non-linearity anywhere: the published head is this stack of Linear layers
            nn.Linear(hidden[2], hidden[3]),
            nn.Linear(hidden[3], 1),
        )

    def forward(self, embeddings: Tensor) -> Tensor:
        check_tensor(embeddings, "embeddings", ndim=2, layout=f"(N, D) with D = {self.embedding_dim}", floating=True)
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"embeddings must be (N, D) with D = {self.embedding_dim}, got shape {tuple(embeddings.shape)}")
        return self.layers(embeddings).squeeze(1)


def aesthetic_head_from_state_dict(state_dict: dict[str, Tensor], dropout: tuple[float, ...] = LAION_DROPOUT
                                   ) -> AestheticHead:
    """An ``AestheticHead`` sized by the weights' own shapes, loaded with every name and shape checked."""
    from minivdm.io.checkpoints import load_into

    weight = state_dict.get("layers.0.weight")
    if weight is None or weight.ndim != 2:
        raise ValueError(f"an aesthetic head state dict must hold 'layers.0.weight' of shape (1024, D) "
                         f"(LAION's layout), got keys {sorted(state_dict)}")
    hidden = []
    for index in (0, 2, 4, 6):
        key = f"layers.{index}.weight"
        if key not in state_dict:
            raise ValueError(f"an aesthetic head state dict must hold {key} (LAION's layout: layers.0, .2, .4, .6, .7), "
                             f"got keys {sorted(state_dict)}")
        hidden.append(int(state_dict[key].shape[0]))
    head = AestheticHead(int(weight.shape[1]), tuple(hidden), dropout)
    load_into(head, state_dict, strict=True)
    return head.eval()


def key_frames(clip: Tensor) -> Tensor:
    """The first, middle (index T // 2) and last frame of a clip (C, T, H, W): (3, C, H, W), C = 3."""
    check_tensor(clip, "clip", ndim=4, layout="(C, T, H, W) with C = 3", floating=True)
    if clip.shape[0] != 3:
        raise ValueError(f"clip must be (C, T, H, W) with C = 3, got shape {tuple(clip.shape)}")
    frames = clip.shape[1]
    if frames == 0:
        raise ValueError(f"clip must be (C, T, H, W) with C = 3 and T >= 1, got shape {tuple(clip.shape)}")
    chosen = clip[:, [0, frames // 2, frames - 1]]
    return rearrange(chosen, "c k h w -> k c h w")


def clip_pixel_values(frames: Tensor, image_size: int, image_mean: tuple[float, ...] = OPENAI_CLIP_MEAN,
                      image_std: tuple[float, ...] = OPENAI_CLIP_STD) -> Tensor:
    """Frames (N, 3, H, W) in [-1, 1] -> CLIP ``pixel_values`` (N, 3, S, S), S = image_size.

    What ``CLIPImageProcessor`` does, in torch: x = (frame + 1) / 2 in [0, 1]; the shortest side resized to
    S (bicubic) and a centre crop of S x S; then (x - mean) / std per channel.
    """
    check_tensor(frames, "frames", ndim=4, layout=FRAMES_LAYOUT, floating=True)
    if frames.shape[1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be {FRAMES_LAYOUT} and N >= 1, got shape {tuple(frames.shape)}")
    images = (frames.float() + 1) / 2
    height, width = images.shape[-2:]
    if (height, width) != (image_size, image_size):
        scale = image_size / min(height, width)
        resized = (max(image_size, round(height * scale)), max(image_size, round(width * scale)))
        images = F.interpolate(images, size=resized, mode="bicubic", align_corners=False, antialias=True)
        images = images.clamp(0, 1)  # bicubic overshoots; the processor's uint8 images cannot
        top, left = (resized[0] - image_size) // 2, (resized[1] - image_size) // 2
        images = images[:, :, top: top + image_size, left: left + image_size]
    mean = torch.tensor(image_mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(image_std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


class ClipScorer:
    """Scores frames with a transformers ``CLIPModel``: unit image embeddings, an aesthetic score and
    the cosine similarity to a caption.

    ``image_size`` defaults to the vision tower's; ``image_mean`` / ``image_std`` (in [0, 1] units) to
    OpenAI CLIP's, which is what ``load_clip_scorer`` reads from a folder's ``preprocessor_config.json``.
    """

    def __init__(self, model: CLIPModel, tokenizer: PreTrainedTokenizerBase, aesthetic_head: AestheticHead | None = None,
                 image_size: int | None = None, image_mean: tuple[float, float, float] = OPENAI_CLIP_MEAN,
                 image_std: tuple[float, float, float] = OPENAI_CLIP_STD, batch_size: int = 64):
        if not isinstance(model, CLIPModel):
            raise TypeError(f"model must be a transformers.CLIPModel, got {type(model).__name__}")
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise TypeError(f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}")
        if aesthetic_head is not None:
            if not isinstance(aesthetic_head, AestheticHead):
                raise TypeError(f"aesthetic_head must be an AestheticHead or None, got {type(aesthetic_head).__name__}")
            if aesthetic_head.embedding_dim != model.config.projection_dim:
                raise ValueError(f"aesthetic_head takes {aesthetic_head.embedding_dim}-d embeddings but the CLIP model "
                                 f"projects to {model.config.projection_dim}")
        image_size = model.config.vision_config.image_size if image_size is None else image_size
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0:
            raise ValueError(f"image_mean and image_std must be 3 numbers each (RGB, std > 0), got {image_mean}, {image_std}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.aesthetic_head = None if aesthetic_head is None else aesthetic_head.eval()
        self.image_size = image_size
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.batch_size = batch_size
        # The text encoder's window: 77 tokens for OpenAI CLIP, 16 for the toy one.
        self.max_length = min(tokenizer.model_max_length, model.config.text_config.max_position_embeddings)

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    def preprocess(self, frames: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> CLIP ``pixel_values`` (N, 3, S, S): resize, centre crop, normalise."""
        return clip_pixel_values(frames, self.image_size, self.image_mean, self.image_std)

    @torch.no_grad()
    def image_embeddings(self, frames: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> e = E_img(x) / ||E_img(x)||, (N, D) float32."""
        pixel_values = self.preprocess(frames)
        embeddings = []
        for batch in pixel_values.split(self.batch_size):
            features = self.model.get_image_features(pixel_values=batch.to(self.device, self.model.dtype))
            # transformers 5 returns the output object (projected embedding in pooler_output), 4.x the tensor
            embeddings.append(features if isinstance(features, Tensor) else features.pooler_output)
        return F.normalize(torch.cat(embeddings).float(), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, captions: list[str]) -> Tensor:
        """u = E_txt(caption) / ||E_txt(caption)||, (N, D) float32, one row per caption."""
        from minivdm.text import check_captions

        captions = check_captions(captions)
        tokens = self.tokenizer(captions, padding="max_length", max_length=self.max_length, truncation=True,
                                return_tensors="pt")
        features = self.model.get_text_features(input_ids=tokens.input_ids.to(self.device),
                                                attention_mask=tokens.attention_mask.to(self.device))
        features = features if isinstance(features, Tensor) else features.pooler_output
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def aesthetic_scores(self, frames: Tensor) -> Tensor:
        """(N,) aesthetic score of every frame: MLP(e)."""
        if self.aesthetic_head is None:
            raise ValueError("this ClipScorer has no aesthetic_head; pass one (load_clip_scorer(..., aesthetic_head=path))")
        embeddings = self.image_embeddings(frames)
        head = self.aesthetic_head
        return head(embeddings.to(head.layers[0].weight.device, head.layers[0].weight.dtype)).float().cpu()

    def aesthetic(self, frames: Tensor) -> float:
        """Mean aesthetic score over frames (N, 3, H, W) in [-1, 1], e.g. ``key_frames(clip)``."""
        return self.aesthetic_scores(frames).mean().item()

    def text_similarity(self, frames: Tensor, caption: str) -> float:
        """Mean over frames of the cosine <e_k, u> between each frame and the caption."""
        if not isinstance(caption, str):
            raise TypeError(f"caption must be a str, got {type(caption).__name__}")
        similarities = self.image_embeddings(frames) @ self.text_embeddings([caption]).T  # (N, 1)
        return similarities.mean().item()


def _preprocessing_of(model_dir: Path) -> dict:
    """image_size, image_mean, image_std from a ``preprocessor_config.json`` (CLIPImageProcessor keys), if any."""
    path = model_dir / "preprocessor_config.json"
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    found = {}
    crop = saved.get("crop_size")
    if isinstance(crop, dict):
        if crop.get("height") != crop.get("width"):
            raise ValueError(f"{path}: only square crops are supported, got crop_size={crop}")
        found["image_size"] = int(crop["height"])
    elif isinstance(crop, int):
        found["image_size"] = crop
    if "image_mean" in saved:
        found["image_mean"] = tuple(saved["image_mean"])
    if "image_std" in saved:
        found["image_std"] = tuple(saved["image_std"])
    return found


def _resolve_model_dir(model_dir: str | Path) -> Path:
    """A local folder, or the cached snapshot of a Hugging Face id such as openai/clip-vit-large-patch14."""
    if not isinstance(model_dir, (str, Path)):
        raise TypeError(f"model_dir must be a str or pathlib.Path, got {type(model_dir).__name__}")
    if Path(model_dir).is_dir():
        return Path(model_dir)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(model_dir), local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        raise FileNotFoundError(
            f"{model_dir} is neither a folder nor a Hugging Face id in the local cache, and minivdm never downloads. "
            f"On a machine with internet run `huggingface-cli download {model_dir}`, or pass a local folder."
        ) from None


def load_clip_scorer(model_dir: str | Path, aesthetic_head: str | Path | None = None, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> ClipScorer:
    """A ``ClipScorer`` from a transformers CLIP folder (weights, tokenizer, preprocessor_config.json), or the
    cached snapshot of a Hugging Face id; never downloads.

    ``aesthetic_head`` is a safetensors file in the LAION layout (``layers.0.weight`` ...); its sizes are
    read from the weights. Only safetensors are read: pickle weights are refused.
    """
    from transformers import AutoTokenizer

    from minivdm.io.checkpoints import read_state_dict

    folder = _resolve_model_dir(model_dir)
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.safetensors.index.json")):
        raise FileNotFoundError(f"no safetensors weights in {folder}; minivdm does not read pickle (.bin) weights. "
                                f"Convert them once with CLIPModel.from_pretrained(...).save_pretrained(folder)")
    model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    head = None
    if aesthetic_head is not None:
        head = aesthetic_head_from_state_dict(read_state_dict(aesthetic_head)).to(device=device, dtype=dtype)
    return ClipScorer(model, tokenizer, head, **_preprocessing_of(folder))
