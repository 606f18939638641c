"""The toy world's temporal layers learned from unlabeled clips (chapter 9): the data has no motion words, the
recipe trains and saves only the new layers and resumes, the loader refuses a file of the other design, and the
motion scores read the data's own clips as the generator made them."""

from dataclasses import replace

import pytest
import torch

from minivdm.toy.temporal_layers import (TEMPORAL_LAYERS_TRAIN, load_toy_temporal_layers, score_motion,
                                         summarise_motion, train_toy_temporal_layers, unlabeled_clips)
from minivdm.toyworld.world import MOTIONS

TINY_RUN = replace(TEMPORAL_LAYERS_TRAIN, steps=2, warmup_steps=1, log_every=1, checkpoint_every=1)


def test_unlabeled_captions_name_the_object_but_not_its_motion():
    clips = unlabeled_clips(40, seed=3)
    for caption, objects in zip(clips.captions, clips.objects):
        assert caption == f"a {objects[0].colour} {objects[0].shape}", caption
        assert not any(word in caption for word in ("moving", "still", *MOTIONS[:4]))
    assert {objects[0].motion for objects in clips.objects} == set(MOTIONS), "the clips themselves still move"


def test_scores_read_the_generators_own_clips():
    clips = unlabeled_clips(60, seed=4)
    rows = score_motion(clips.video, [(o[0].colour, o[0].shape) for o in clips.objects])
    truth = [o[0].motion for o in clips.objects]
    assert sum(seen == true for seen, true in zip(rows["motion"], truth)) >= 57
    summary = summarise_motion(rows)
    assert summary["identity"] >= 0.95 and summary["clips"] == 60
    assert abs(summary["moving_cleanly"] - sum(m != "still" for m in truth) / 60) <= 0.1
    assert abs(sum(summary["motion_distribution"].values()) - 1) < 1e-9


@pytest.mark.parametrize("design", ["make-a-video", "video-ldm"])
def test_recipe_trains_only_the_new_layers_saves_them_and_resumes(tmp_path, design):
    out = train_toy_temporal_layers(tmp_path / "out", design=design, config=TINY_RUN, dataset_size=16, batch_size=2,
                                    checkpoint_dir=tmp_path / "ck", progress=False, command="test")
    model, _, metadata = load_toy_temporal_layers(out.parent)
    assert metadata["design"] == design and metadata["steps"] == "2" and metadata["command"] == "test"
    assert model.unet.new_parameter_names(), "the file filled the new layers"
    changed = [name for name, parameter in model.unet.named_parameters()
               if model.unet.is_new(name) and parameter.abs().sum() > 0]
    assert changed
    again = train_toy_temporal_layers(tmp_path / "again", design=design, config=replace(TINY_RUN, steps=3),
                                      dataset_size=16, batch_size=2, checkpoint_dir=tmp_path / "ck", progress=False)
    resumed, _, resumed_metadata = load_toy_temporal_layers(again.parent)
    assert resumed_metadata["steps"] == "3"


def test_loader_refuses_a_missing_folder_and_a_foreign_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-toy-temporal-layers"):
        load_toy_temporal_layers(tmp_path)
    out = train_toy_temporal_layers(tmp_path / "mav", design="make-a-video", config=TINY_RUN, dataset_size=8,
                                    batch_size=2, progress=False)
    from safetensors.torch import load_file, save_file

    state = load_file(out)
    save_file(state, str(out), metadata={"design": "video-ldm"})
    with pytest.raises(ValueError, match="new layers of a video-ldm inflation"):
        load_toy_temporal_layers(out.parent)
    with pytest.raises(ValueError, match="design must be one of"):
        train_toy_temporal_layers(tmp_path / "x", design="vdm", config=TINY_RUN)
