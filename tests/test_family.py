"""One way to pick a model: a backbone's family from its config, its shape applied once."""

import pytest
from transformers import BertConfig, GPT2Config, LlamaConfig

from iam_tutorial.backbones import BackboneError
from iam_tutorial.config import SCRATCH, get_config
from iam_tutorial.family import family, model_config


def saved(folder, config):
    config.save_pretrained(folder)
    return str(folder)


def test_each_backbone_has_one_family(tmp_path):
    gpt2 = saved(tmp_path / "gpt2", GPT2Config(n_layer=2, n_head=2, n_embd=8, n_positions=64))
    llama = saved(tmp_path / "llama", LlamaConfig(hidden_size=8, num_hidden_layers=3,
                                                  num_attention_heads=2, num_key_value_heads=1,
                                                  max_position_embeddings=96))  # fmt: skip
    bert = saved(tmp_path / "bert", BertConfig(hidden_size=8, num_attention_heads=2))
    assert [family(b) for b in (SCRATCH, gpt2, llama)] == [SCRATCH, "gpt2", "decoder"]
    with pytest.raises(BackboneError, match="is a bert model"):
        family(bert)
    assert model_config(get_config("quick")) == get_config("quick")
    shaped = model_config(get_config("quick", backbone=llama, max_tokens=96))
    assert (shaped.n_layer, shaped.n_head, shaped.n_embd) == (3, 2, 8)
    shaped = model_config(get_config("quick", backbone=gpt2, max_tokens=64))
    assert (shaped.n_layer, shaped.n_head, shaped.n_embd) == (2, 2, 8)
