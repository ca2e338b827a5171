"""A tiny random stand-in for the shipped En->De T5 pair, for offline tests.

`make_fake_ende(directory)` writes ``directory/{target,draft}`` (T5Seq2SeqLM
presets with a SentencePiece T5Tokenizer and T5Seq2SeqLMPreprocessor, like
``keras_specdec/pairs/ende``) and ``directory/test.{en,de}``.
"""

import io
import json
import os

SENTENCES_EN = [
    "The cat sits on the mat.",
    "I would like a cup of coffee.",
    "The weather is nice today.",
    "Where is the train station?",
    "We are going to the market tomorrow.",
    "She reads a book every evening.",
]
SENTENCES_DE = [
    "Die Katze sitzt auf der Matte.",
    "Ich möchte eine Tasse Kaffee.",
    "Das Wetter ist heute schön.",
    "Wo ist der Bahnhof?",
    "Wir gehen morgen auf den Markt.",
    "Sie liest jeden Abend ein Buch.",
]


def sentencepiece_proto(sentences, vocab_size=96):
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 4),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
    )
    return model.getvalue()


def make_fake_ende(directory, sequence_length=64):
    import keras
    import keras_hub

    proto = sentencepiece_proto(SENTENCES_EN + SENTENCES_DE)
    for role, (layers, hidden, heads, inter, seed) in {
        "target": (2, 32, 4, 64, 1),
        "draft": (1, 16, 2, 32, 2),
    }.items():
        keras.utils.set_random_seed(seed)
        tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
        preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
            tokenizer=tokenizer,
            encoder_sequence_length=sequence_length,
            decoder_sequence_length=sequence_length,
        )
        backbone = keras_hub.models.T5Backbone(
            vocabulary_size=tokenizer.vocabulary_size(),
            num_layers=layers,
            num_heads=heads,
            hidden_dim=hidden,
            intermediate_dim=inter,
        )
        model = keras_hub.models.T5Seq2SeqLM(
            backbone=backbone, preprocessor=preprocessor
        )
        model.save_to_preset(os.path.join(directory, role))
    for lang, sentences in (("en", SENTENCES_EN), ("de", SENTENCES_DE)):
        with open(os.path.join(directory, f"test.{lang}"), "w") as f:
            f.write("\n".join(sentences) + "\n")
    with open(os.path.join(directory, "training.json"), "w") as f:
        json.dump({"fake": True, "source_prefix": ""}, f)
    return directory


if __name__ == "__main__":
    import sys

    print(make_fake_ende(sys.argv[1]))
