"""The frozen mT5 text encoder: masked mean pooling, padding invariance, deduplication, batching."""
import pytest
import torch

from uni_sign_ext.text_encoder import FrozenTextEncoder

CORPUS = [f"the {hand} hand moves {how} to the {where}"
          for hand in ("left", "right", "both") for how in ("up", "down", "slowly")
          for where in ("chin", "chest", "side", "face")]


def build_tiny_mt5(folder, seed=0):
    """A random-weight mT5 (d_model 64) with a SentencePiece tokenizer trained on CORPUS."""
    import sentencepiece as spm
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_prefix=str(folder / "spiece"),
                                   vocab_size=60, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, minloglevel=2)
    (folder / "spiece.vocab").unlink()
    tokenizer = T5Tokenizer(str(folder / "spiece.model"), legacy=False, extra_ids=0)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = MT5Config(vocab_size=len(tokenizer), d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=1,
                       num_decoder_layers=1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    MT5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def mt5_dir(tmp_path_factory):
    return str(build_tiny_mt5(tmp_path_factory.mktemp("mt5") / "tiny-mt5"))


@pytest.fixture(scope="module")
def encoder(mt5_dir):
    return FrozenTextEncoder(mt5_dir)


def count_forwards(encoder):
    """A list that grows by the batch size of every encoder forward."""
    sizes = []
    encoder.model.register_forward_hook(lambda module, args, kwargs, out: sizes.append(len(kwargs["input_ids"])),
                                        with_kwargs=True)
    return sizes


def test_mean_pooling_is_the_masked_mean_of_the_last_hidden_state(encoder, mt5_dir):
    from transformers import MT5EncoderModel, T5Tokenizer

    texts = ["the left hand moves up", "both hands move slowly to the chest and then down to the side"]
    tokenizer = T5Tokenizer.from_pretrained(mt5_dir, legacy=False)
    model = MT5EncoderModel.from_pretrained(mt5_dir).eval()
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    assert tokens["attention_mask"].sum(1).tolist()[0] < tokens["attention_mask"].shape[1], "the batch needs padding"
    with torch.no_grad():
        hidden = model(**tokens).last_hidden_state
    expected = torch.stack([hidden[i, tokens["attention_mask"][i].bool()].mean(0) for i in range(len(texts))])

    features = encoder.encode(texts)

    assert features.shape == (2, 64) and features.dtype == torch.float32 and features.device.type == "cpu"
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-6)


def test_padding_does_not_change_a_feature(encoder):
    short = "the right hand moves up"
    alone = encoder.encode([short])
    padded = encoder.encode([short, "both hands move slowly down to the chest, then up to the face and the chin"])
    torch.testing.assert_close(padded[:1], alone, rtol=1e-5, atol=1e-6)


def test_duplicates_are_encoded_once_and_scattered_back(mt5_dir):
    encoder = FrozenTextEncoder(mt5_dir)
    sizes = count_forwards(encoder)
    texts = ["hand up", "hand down", "hand up", "hand up", "hand down"]

    features = encoder.encode(texts)

    assert sizes == [2]
    assert features.shape == (5, 64)
    assert torch.equal(features[0], features[2]) and torch.equal(features[0], features[3])
    assert torch.equal(features[1], features[4]) and not torch.equal(features[0], features[1])


def test_batches_of_batch_size_give_the_same_features(encoder, mt5_dir):
    small = FrozenTextEncoder(mt5_dir, batch_size=4)
    sizes = count_forwards(small)
    texts = CORPUS[:10]

    features = small.encode(texts)

    assert sizes == [4, 4, 2]
    torch.testing.assert_close(features, encoder.encode(texts), rtol=1e-5, atol=1e-6)


def test_texts_are_truncated_at_max_length(encoder, mt5_dir):
    short = FrozenTextEncoder(mt5_dir, max_length=4)
    texts = ["the left hand moves up to the chin", "the left hand moves down to the side"]
    assert [short.tokenizer.tokenize(t)[:3] for t in texts].count(short.tokenizer.tokenize(texts[0])[:3]) == 2

    truncated = short.encode(texts)

    torch.testing.assert_close(truncated[0], truncated[1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(*encoder.encode(texts))


def test_frozen_and_outside_any_module(encoder):
    assert not isinstance(encoder, torch.nn.Module)
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert not encoder.model.training
    assert encoder.d_model == 64
    assert encoder.encode([]).shape == (0, 64)
