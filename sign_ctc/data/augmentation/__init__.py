"""The pose augmentation's transforms, one module per family; :mod:`sign_ctc.data.augment` composes them.

A transform is any callable keeping :class:`~sign_ctc.data.augmentation.base.Transform`; the config
(``conf/augmentation/default.yaml``) lists them by name in the order applied, and each draws from its
own generator, so a new one is a module here plus a YAML entry and changes no other's draws.
"""
