"""Train the CSLR model: data -> model -> callbacks -> loggers -> trainer -> fit -> test on the best checkpoint.

    python train.py                                   # I3D teacher on the embedded synthetic corpus
    python train.py model=i3d data=mediapipe_full data.root=/path/to/corpus
    python train.py -m model.optimizer.lr=3e-4,1e-3   # a Hydra sweep (each job: own dir, own W&B run)
    python train.py hparams_search=optuna             # Optuna TPE search (sign_ctc/conf/hparams_search/optuna.yaml)

Resume: a run directory holds run.json (its overrides and W&B run id), checkpoints/last.ckpt
(written every epoch, and on SIGTERM / Ctrl+C) and, once finished, metrics.json. Re-run the same
command with the run directory and `ckpt_path=last`:

    python train.py <same overrides> hydra.run.dir=outputs/train/runs/<run> ckpt_path=last
    python train.py -m <same sweep> hydra.sweep.dir=outputs/train/multiruns/<sweep> ckpt_path=last

It continues from last.ckpt (epoch, global step, optimizer, scheduler, RNG states, same W&B run);
a job that has no last.ckpt yet starts afresh and a completed job (metrics.json) is not re-run.
"""

if __name__ == "__main__":
    from sign_ctc.run.backend import share_cores_politely

    share_cores_politely()  # first: the OpenMP runtime reads its wait policy when torch loads
    from sign_ctc.cli.train import main

    main()
