"""Audio: WAV reading, front ends, the Speech Commands reader, speech synthesis, and the
Beam feature extraction that turns clips into an example set for the model chain."""
