"""Live recognition: a causal model run on a stream of frames, carrying its state, and decoders that
commit glosses as they become certain. Exactness is the contract: the log-probs of a stream equal the
whole sentence's forward (:mod:`sign_ctc.streaming.recognizer`)."""
