"""Evaluate a checkpoint: WER table (S/D/I) and per-sentence hypotheses of a corpus split.

    python eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt     # the run's own corpus
    python eval.py ckpt_path=... split=dev decoding=beam \
        scoring.stm=<root>/evaluation/phoenix2014-groundtruth-dev.stm scoring.rules=phoenix2014
    python eval.py ckpt_path=... data=phoenix2014 data.root=... data.landmarks_dir=...   # another corpus
    python eval.py ckpt_path=... decoding=beam decoding.lm_path=gloss.arpa decoding.tune=true

``decoding.tune=true`` chooses the LM weight and word bonus on the dev split (one forward pass,
a grid of decodes), writes them to ``<ckpt stem>.decoding.json`` beside the checkpoint and then
evaluates ``split`` with them; later ``decoding=beam`` runs without ``decoding.lm_weight`` /
``decoding.word_bonus`` on the command line reuse that file (:mod:`sign_ctc.run.decoding_setup`).

The hypotheses' CTM (``<split>_hyp.ctm``) is timed by the CTC forced alignment of each hypothesis
to the model's output (:mod:`sign_ctc.decoding.alignment`), in seconds at the corpus frame rate. Under
``<run>/figures/`` go the error plots of the split (substitution pairs, per-gloss error rates, WER
by sentence length) and the posteriorgram and skeleton video of the ``figures.n`` worst and best
sentences (:mod:`sign_ctc.cli.render`); ``figures=false`` draws nothing.

What the model saw in training comes from the checkpoint, never from the command line: vocabulary,
normalization statistics and the missing-landmark mode (`data.missing`; a command line that sets
another one is overridden, with a warning). The corpus is the one the checkpoint was trained on
unless the command line names one (`data=...`).
"""

if __name__ == "__main__":
    from sign_ctc.run.backend import share_cores_politely

    share_cores_politely()  # first: the OpenMP runtime reads its wait policy when torch loads
    from sign_ctc.cli.eval import main

    main()
