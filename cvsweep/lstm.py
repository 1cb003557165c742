"""The text model of the earlier tool: token embedding, an LSTM (optionally bidirectional),
dense layers with dropout, a softmax output. Inputs are padded token matrices (0 pads)."""

from __future__ import annotations


def build_lstm(model, sequence_length: int, vocab_size: int, num_classes: int, seed: int):
    import keras
    from keras import layers

    from cvsweep.model import classifier_head

    recurrent = layers.LSTM(model.lstm_units, seed=seed)
    net = [
        keras.Input(shape=(sequence_length,), dtype="int32"),
        layers.Embedding(vocab_size, model.embedding_dim, mask_zero=True),
        layers.Bidirectional(recurrent) if model.bidirectional else recurrent,
    ]
    return keras.Sequential(net + classifier_head(model, num_classes), name="cvsweep_lstm")
