"""The reference Smart Turn v3 decision, as pipecat makes it: onnxruntime
on the model file, features by pipecat's own numpy extractor (shipped in
the model folder as _whisper_features.py by scripts/setup).

    python turn-reference.py MODEL_DIR FEATURES_OUT WAV...

For each 16 kHz mono WAV (its last 8 s, zero-padded at the front) prints
one line "PATH PROBABILITY"; FEATURES_OUT gets the first WAV's features as
little-endian float32 (80 x 800), for comparing extractors. tests/turn.rs
runs it against the Rust implementation (crates/voice/src/turn.rs).
"""
import sys
import wave

import numpy as np
import onnxruntime as ort

model_dir, features_out, wavs = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.insert(0, model_dir)
from _whisper_features import compute_whisper_log_mel_features  # noqa: E402

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(f"{model_dir}/smart-turn-v3.2-cpu.onnx", sess_options=options)
for i, path in enumerate(wavs):
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    audio = audio[-128000:]
    audio = np.pad(audio, (128000 - len(audio), 0))
    features = compute_whisper_log_mel_features(audio, do_normalize=True)
    if i == 0:
        features.astype("<f4").tofile(features_out)
    probability = session.run(None, {"input_features": features[None]})[0].ravel()[0]
    print(path, float(probability))
