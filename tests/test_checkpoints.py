"""Diffusers-format checkpoints load into minivdm modules by name, loudly, and round-trip through files."""

import copy
import json

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel
from diffusers.models.resnet import ResnetBlock2D as DiffusersResnetBlock2D
from safetensors.torch import save_file
from torch import nn

from minivdm.io import (
    CheckpointMismatchError,
    LoadReport,
    count_parameters,
    find_weights_file,
    load_into,
    map_keys,
    read_component,
    read_model_index,
    read_state_dict,
    save_component,
)
from minivdm.nn import ResnetBlock2D


def tiny_unet() -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(1)
    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                         norm_num_groups=4, latent_channels=4, sample_size=16,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


def diffusers_resnet() -> DiffusersResnetBlock2D:
    torch.manual_seed(2)
    return DiffusersResnetBlock2D(in_channels=8, out_channels=16, temb_channels=12, groups=4, eps=1e-6).eval()


def our_resnet() -> ResnetBlock2D:
    return ResnetBlock2D(8, 16, 12, groups=4, eps=1e-6).eval()


def assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_read_component_reads_a_diffusers_save_pretrained_folder(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "unet")
    config, state_dict = read_component(tmp_path / "unet")
    assert_same_state(state_dict, unet.state_dict())
    assert config["_class_name"] == "UNet2DModel"
    assert tuple(config["block_out_channels"]) == (8, 16) and config["norm_num_groups"] == 4
    assert find_weights_file(tmp_path / "unet").name == "diffusion_pytorch_model.safetensors"


def test_read_component_reads_each_component_of_a_pipeline_folder(tmp_path):
    unet, vae = tiny_unet(), tiny_vae()
    unet.save_pretrained(tmp_path / "unet")
    vae.save_pretrained(tmp_path / "vae")
    index = {"_class_name": "TinyPipeline", "unet": ["diffusers", "UNet2DModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (tmp_path / "model_index.json").write_text(json.dumps(index))

    assert read_model_index(tmp_path) == index
    vae_config, vae_state = read_component(tmp_path, "vae")
    unet_config, unet_state = read_component(tmp_path, "unet")
    assert vae_config["_class_name"] == "AutoencoderKL" and vae_config["latent_channels"] == 4
    assert unet_config["_class_name"] == "UNet2DModel"
    assert_same_state(vae_state, vae.state_dict())
    assert_same_state(unet_state, unet.state_dict())

    with pytest.raises(FileNotFoundError, match=r"'text_encoder'.*\['unet', 'vae'\]"):
        read_component(tmp_path, "text_encoder")
    with pytest.raises(FileNotFoundError, match="subfolder="):
        read_component(tmp_path)
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        read_model_index(tmp_path / "vae")


def test_find_weights_file_says_what_the_folder_holds(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"config\.json, diffusion_pytorch_model\.fp16\.safetensors"):
        find_weights_file(tmp_path)


def test_find_weights_file_prefers_safetensors_over_pickle(tmp_path):
    state = diffusers_resnet().state_dict()
    torch.save(state, tmp_path / "diffusion_pytorch_model.bin")
    assert find_weights_file(tmp_path).name == "diffusion_pytorch_model.bin"
    save_file(state, tmp_path / "model.safetensors")
    assert find_weights_file(tmp_path).name == "model.safetensors"
    save_file(state, tmp_path / "diffusion_pytorch_model.safetensors")
    assert find_weights_file(tmp_path).name == "diffusion_pytorch_model.safetensors"


def test_load_into_meta_model_reproduces_the_diffusers_module(tmp_path):
    theirs = diffusers_resnet()
    save_file(theirs.state_dict(), tmp_path / "block.safetensors")
    with torch.device("meta"):
        ours = our_resnet()
    assert count_parameters(ours) == count_parameters(theirs)

    report = load_into(ours, read_state_dict(tmp_path / "block.safetensors"))
    assert report.ok() and report.loaded == len(theirs.state_dict())
    assert not any(t.is_meta for t in [*ours.parameters(), *ours.buffers()])
    assert all(p.requires_grad for p in ours.parameters())
    x, temb = torch.randn(2, 8, 8, 8), torch.randn(2, 12)
    with torch.no_grad():
        assert torch.allclose(ours(x, temb), theirs(x, temb), atol=1e-6)


def test_load_into_casts_to_the_requested_dtype():
    theirs = diffusers_resnet()
    with torch.device("meta"):
        meta_model = our_resnet()
    load_into(meta_model, theirs.state_dict(), dtype=torch.float16, device="cpu")
    cpu_model = our_resnet()
    load_into(cpu_model, theirs.state_dict(), dtype=torch.bfloat16)
    for model, dtype in [(meta_model, torch.float16), (cpu_model, torch.bfloat16)]:
        for name, parameter in model.named_parameters():
            assert parameter.dtype == dtype and parameter.device.type == "cpu", name
            assert torch.equal(parameter, theirs.get_parameter(name).to(dtype)), name


def test_load_into_a_model_on_the_cpu_copies_in_place():
    theirs, ours = diffusers_resnet(), our_resnet()
    parameter_before = ours.conv1.weight
    load_into(ours, theirs.state_dict())
    assert ours.conv1.weight is parameter_before  # an optimizer holding it stays valid
    assert torch.equal(ours.conv1.weight, theirs.conv1.weight)


def broken_checkpoint() -> dict:
    state = dict(diffusers_resnet().state_dict())
    state["time_embedding_projection.weight"] = state.pop("time_emb_proj.weight")  # renamed
    del state["norm2.bias"]  # dropped
    state["conv1.weight"] = torch.zeros(16, 8, 5, 5)  # reshaped: the model has (16, 8, 3, 3)
    return state


def test_strict_load_names_every_mismatch_and_changes_nothing():
    ours = our_resnet()
    before = copy.deepcopy(ours.state_dict())
    with pytest.raises(CheckpointMismatchError) as caught:
        load_into(ours, broken_checkpoint())
    message = str(caught.value)
    assert "time_emb_proj.weight" in message and "norm2.bias" in message  # missing
    assert "time_embedding_projection.weight" in message  # unexpected
    assert "conv1.weight: (16, 8, 5, 5) vs (16, 8, 3, 3)" in message  # mis-shaped, with both shapes
    assert message.index("missing") < message.index("unexpected") < message.index("mis-shaped")
    assert_same_state(ours.state_dict(), before)


def test_strict_load_into_meta_model_leaves_it_on_meta():
    with torch.device("meta"):
        ours = our_resnet()
    with pytest.raises(CheckpointMismatchError):
        load_into(ours, broken_checkpoint())
    assert all(p.is_meta for p in ours.parameters())


def test_partial_load_reports_and_loads_what_matches():
    theirs, ours = diffusers_resnet(), our_resnet()
    kept_conv1 = ours.conv1.weight.detach().clone()
    report = load_into(ours, broken_checkpoint(), strict=False)
    assert isinstance(report, LoadReport) and not report.ok()
    assert report.missing == ["time_emb_proj.weight", "norm2.bias"]
    assert report.unexpected == ["time_embedding_projection.weight"]
    assert report.mismatched == [("conv1.weight", (16, 8, 5, 5), (16, 8, 3, 3))]
    assert report.loaded == len(theirs.state_dict()) - 3
    assert torch.equal(ours.conv2.weight, theirs.conv2.weight)  # loaded
    assert torch.equal(ours.conv1.weight, kept_conv1)  # mis-shaped: left as it was
    assert "1 mis-shaped" in str(report) and "time_emb_proj.weight" in str(report)


def test_partial_load_into_meta_model_refuses_to_leave_tensors_on_meta():
    with torch.device("meta"):
        ours = our_resnet()
    state = dict(diffusers_resnet().state_dict())
    del state["norm2.bias"]
    with pytest.raises(ValueError, match=r"norm2\.bias.*nothing was loaded"):
        load_into(ours, state, strict=False)
    assert all(p.is_meta for p in ours.parameters())


class TiedEmbeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.unembed = nn.Linear(4, 10, bias=False)
        self.unembed.weight = self.embed.weight


def test_load_into_meta_model_keeps_tied_parameters_tied():
    source = TiedEmbeddings()
    with torch.device("meta"):
        ours = TiedEmbeddings()
    load_into(ours, {key: tensor.clone() for key, tensor in source.state_dict().items()})
    assert ours.unembed.weight is ours.embed.weight
    assert count_parameters(ours) == 40
    untied = {"embed.weight": torch.zeros(10, 4), "unembed.weight": torch.ones(10, 4)}
    with pytest.raises(CheckpointMismatchError, match="ties"):
        load_into(TiedEmbeddings(), untied)


def test_many_mismatches_are_truncated_with_a_count():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(30)])
    with pytest.raises(CheckpointMismatchError) as caught:
        load_into(model, {})
    message = str(caught.value)
    assert "missing from the checkpoint (model keys) (60)" in message and "... and 40 more" in message
    assert "0.weight" in message and "29.bias" not in message


def test_pickle_files_are_refused_unless_allowed(tmp_path):
    state = diffusers_resnet().state_dict()
    path = tmp_path / "diffusion_pytorch_model.bin"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model\.bin.*pickle.*arbitrary code"):
        read_state_dict(path)
    with pytest.raises(ValueError, match="pickle"):
        read_state_dict(tmp_path)  # the folder resolves to the same file
    assert_same_state(read_state_dict(path, allow_pickle=True), state)


def test_pickle_holding_something_else_than_a_state_dict_is_rejected(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "global_step": 3}, path)
    with pytest.raises(TypeError, match="state_dict"):
        read_state_dict(path, allow_pickle=True)


def test_sharded_checkpoint_is_reassembled(tmp_path):
    state = dict(diffusers_resnet().state_dict())
    keys = sorted(state)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": keys[:5],
              "diffusion_pytorch_model-00002-of-00002.safetensors": keys[5:]}
    for name, shard_keys in shards.items():
        save_file({key: state[key] for key in shard_keys}, tmp_path / name)
    weight_map = {key: name for name, shard_keys in shards.items() for key in shard_keys}
    index_path = tmp_path / "diffusion_pytorch_model.safetensors.index.json"
    index_path.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    assert find_weights_file(tmp_path) == index_path
    assert_same_state(read_state_dict(tmp_path), state)
    assert_same_state(read_state_dict(index_path), state)

    weight_map[keys[0]] = "diffusion_pytorch_model-00002-of-00002.safetensors"  # the index lies
    index_path.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match=keys[0].replace(".", r"\.")):
        read_state_dict(tmp_path)


def test_sharded_save_pretrained_folder_is_reassembled(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path, max_shard_size="40KB")
    assert find_weights_file(tmp_path).name == "diffusion_pytorch_model.safetensors.index.json"
    assert_same_state(read_component(tmp_path)[1], unet.state_dict())


def test_key_map_as_a_dict_renames_and_checks_its_entries():
    state = {"a.weight": torch.zeros(1), "b.weight": torch.ones(1)}
    assert list(map_keys(state, {"a.weight": "x.weight"})) == ["x.weight", "b.weight"]
    assert list(map_keys(state, {"a.weight": None})) == ["b.weight"]
    with pytest.raises(ValueError, match="typo.weight"):
        map_keys(state, {"typo.weight": "x.weight"})


def test_key_map_as_a_callable_can_drop_keys():
    state = {"model.a": torch.zeros(1), "model.b": torch.ones(1), "ema.a": torch.zeros(1)}
    renamed = map_keys(state, lambda key: None if key.startswith("ema.") else key.removeprefix("model."))
    assert list(renamed) == ["a", "b"] and renamed["b"] is state["model.b"]
    with pytest.raises(TypeError, match="str or None"):
        map_keys(state, lambda key: 3)


def test_key_map_as_regex_rules_applies_them_in_order():
    state = {"down.0.attn.q.weight": torch.zeros(1), "down.0.attn.k.weight": torch.zeros(1),
             "down.1.norm.weight": torch.zeros(1), "ema_decay": torch.zeros(1)}
    rules = [(r"^down\.(\d+)\.", r"down_blocks.\1."), (r"attn\.([qk])\.", r"attn.to_\1."),
             (r"^ema_", None), (r"down_blocks\.1\.norm", "down_blocks.1.norm1")]
    assert list(map_keys(state, rules)) == ["down_blocks.0.attn.to_q.weight", "down_blocks.0.attn.to_k.weight",
                                            "down_blocks.1.norm1.weight"]
    with pytest.raises(TypeError, match="rule"):
        map_keys(state, [("only a pattern",)])


def test_key_map_collision_is_an_error():
    state = {"a.weight": torch.zeros(1), "b.weight": torch.ones(1)}
    with pytest.raises(ValueError, match=r"'x\.weight'.*'a\.weight'.*'b\.weight'"):
        map_keys(state, [(r"^[ab]\.", "x.")])
    with pytest.raises(ValueError, match="two checkpoint keys"):
        map_keys(state, {"a.weight": "b.weight"})


def test_load_into_applies_the_key_map():
    theirs = diffusers_resnet()
    published = {key.replace("time_emb_proj", "emb_layers.1"): t for key, t in theirs.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match="emb_layers.1.weight"):
        load_into(our_resnet(), published)
    ours = our_resnet()
    assert load_into(ours, published, key_map=[(r"^emb_layers\.1\.", "time_emb_proj.")]).ok()
    assert torch.equal(ours.time_emb_proj.weight, theirs.time_emb_proj.weight)


def test_save_component_round_trips_and_diffusers_reads_it(tmp_path):
    unet = tiny_unet().eval()
    config = dict(unet.config)
    folder = save_component(unet, tmp_path / "unet", config)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]

    read_config, state = read_component(folder)
    assert read_config == json.loads(json.dumps(config))
    assert_same_state(state, unet.state_dict())

    reloaded = UNet2DModel.from_pretrained(folder).eval()
    sample, timestep = torch.randn(1, 3, 8, 8), torch.tensor([10])
    with torch.no_grad():
        assert torch.allclose(reloaded(sample, timestep).sample, unet(sample, timestep).sample, atol=1e-6)


def test_save_component_of_our_module_loads_back_into_a_meta_model(tmp_path):
    ours = our_resnet()
    folder = save_component(ours, tmp_path / "block", {"in_channels": 8, "out_channels": 16, "groups": 4})
    config, state = read_component(folder)
    with torch.device("meta"):
        fresh = ResnetBlock2D(config["in_channels"], config["out_channels"], 12, groups=config["groups"], eps=1e-6)
    load_into(fresh, state)
    assert_same_state(fresh.state_dict(), ours.state_dict())
    assert not list(tmp_path.glob("**/*.tmp"))


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(TypeError, match="torch.nn.Module"):
        load_into({"not": "a model"}, {})
    with pytest.raises(ValueError, match="dtype"):
        load_into(our_resnet(), {}, dtype=torch.int8)
    with pytest.raises(TypeError, match=r"str -> torch\.Tensor"):
        load_into(our_resnet(), {"conv1.weight": [1, 2]})
    with pytest.raises(TypeError, match="key_map"):
        map_keys({}, 42)
    with pytest.raises(TypeError, match="JSON"):
        save_component(our_resnet(), tmp_path / "unused", {"eps": torch.tensor(1.0)})
    with torch.device("meta"):
        meta_model = our_resnet()
    with pytest.raises(ValueError, match="meta"):
        save_component(meta_model, tmp_path / "unused", {})
    assert not (tmp_path / "unused").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_load_into_meta_model_onto_the_gpu():
    theirs = diffusers_resnet()
    with torch.device("meta"):
        ours = our_resnet()
    load_into(ours, theirs.state_dict(), dtype=torch.float16, device="cuda")
    assert all(p.device.type == "cuda" and p.dtype == torch.float16 for p in ours.parameters())
    x, temb = torch.randn(2, 8, 8, 8), torch.randn(2, 12)
    with torch.no_grad():
        expected = theirs(x, temb)
        assert torch.allclose(ours(x.cuda().half(), temb.cuda().half()).float().cpu(), expected, atol=2e-2)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_truncated_weights_file_is_named_with_what_to_do(tmp_path, suffix):
    from minivdm.io.checkpoints import CorruptCheckpointError, read_state_dict

    path = tmp_path / f"weights{suffix}"
    state = {"conv.weight": torch.randn(64, 64)}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # an interrupted download or copy
    with pytest.raises(CorruptCheckpointError, match=rf"cannot read {path} .*probably truncated.*copy it again"):
        read_state_dict(path, allow_pickle=True)


def test_the_metadata_of_a_truncated_shipped_file_is_an_error_naming_it(tmp_path):
    from minivdm.io.checkpoints import CorruptCheckpointError
    from minivdm.toy import read_metadata
    from minivdm.toy.denoisers import chapter1_path, load_image_denoiser

    path = tmp_path / "chapter01_denoiser_v.safetensors"
    path.write_bytes(chapter1_path("v").read_bytes()[:3000])
    with pytest.raises(CorruptCheckpointError, match="chapter01_denoiser_v.safetensors"):
        read_metadata(path)
    with pytest.raises(CorruptCheckpointError, match="git checkout"):
        load_image_denoiser("v", path)
