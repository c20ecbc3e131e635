"""The profiler regions the library marks, for the tools that measure it.

Each name labels one phase of a step with
``torch.profiler.record_function``; ``tood.analysis.benchmarking`` reads
them back from a ``torch.profiler`` run, and they show in any profile a
user records (TensorBoard's trace viewer, ``key_averages()``). The names
are stable: tools and users may rely on them.

* ``tood.network``: backbone, neck and head, in every mode of
  ``TOOD.forward`` (compiled or not);
* ``tood.losses``: a head's training method on the head's outputs (priors,
  padded GTs, assignment, targets, losses): ``DenseHead.loss_by_feat``;
* ``tood.assign``: the assigner alone, inside ``tood.losses``:
  ``criteria.targets.assign_targets``, the step every criterion shares;
* ``tood.postprocess``: detections from a head's outputs (score filter,
  top-k, NMS, rescale): ``task_modules.postprocess.detections_from_levels``.

The exported ONNX graph is traced from the functions inside these regions,
not through them, so it holds no labels. Outside a profiler a label costs
a few microseconds.
"""
NETWORK = 'tood.network'
LOSSES = 'tood.losses'
ASSIGN = 'tood.assign'
POSTPROCESS = 'tood.postprocess'
