"""The text model of the earlier tool: token embedding, an LSTM (optionally bidirectional),
dense layers with dropout, a softmax output. Inputs are padded token matrices (0 pads)."""

from __future__ import annotations


def build_lstm(model, sequence_length: int, vocab_size: int, num_classes: int, seed: int):
    import keras
    from keras import layers

    init = model.kernel_initializer.name
    recurrent = layers.LSTM(model.lstm_units, seed=seed)
    net = [
        keras.Input(shape=(sequence_length,), dtype="int32"),
        layers.Embedding(vocab_size, model.embedding_dim, mask_zero=True),
        layers.Bidirectional(recurrent) if model.bidirectional else recurrent,
    ]
    for _ in range(model.dense_layers):
        if model.dropout > 0:
            net.append(layers.Dropout(model.dropout))
        net.append(layers.Dense(model.dense_units, kernel_initializer=init))
        net.append(layers.Activation(model.activation.name))
    if model.dropout > 0:
        net.append(layers.Dropout(model.dropout))
    net.append(layers.Dense(num_classes, activation="softmax", kernel_initializer=init))
    return keras.Sequential(net, name="cvsweep_lstm")
