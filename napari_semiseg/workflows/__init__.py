"""Workflows: what a user asks of the engine, the same whichever face asks it.

``semiseg`` (cli/) and the napari panels (_napari/) collect input, build a request, call a
workflow and render its progress and report; everything in between lives here, so the two
faces cannot drift apart. No napari, Qt or argparse here.

- ``train``: ``TrainRequest`` → ``plan_training`` (cases, card + the method's published recipe
  + the user's settings) → ``open_run`` → the trainer (in this process or a child) →
  ``close_run`` (model version registered, activated when validated); ``plan_resume``.
- ``predict``: ``load_model_version`` / ``load_model_file`` (a run's model.pt, no project; both
  with the method's post-processing), ``iter_predict`` / ``predict``, ``save_prediction``.
- ``volume_files``: the volumes a file or folder given to predict stands for.
- ``splits``: ``move_cases`` in a user's words (train, validation, test).
- ``evaluate``: ``EvaluateRequest`` → ``evaluate_model`` (held-out cases, recorded with the model
  version) and ``evaluate_folders`` (two folders of label files matched by case name).
- ``models``: a model version's card as a ``ModelCard`` (``card_of``).
- ``pseudo``: ``PseudoLabelRequest`` → ``cases_to_pseudo_label`` → ``iter_pseudo_labels``.
"""
