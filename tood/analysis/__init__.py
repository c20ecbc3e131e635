"""Analysis helpers behind ``tools/analysis``: each module is imported
where it is used, so that nothing heavy is loaded by ``import
tood.analysis``.

* ``tood.analysis.alignment``: how well the two tasks' predictions agree
  (the paper's alignment analysis);
* ``tood.analysis.assignability``: how many priors each ground-truth box
  could be assigned, before training;
* ``tood.analysis.benchmarking``: speed and memory, timed with
  ``torch.utils.benchmark`` and split into the phases the library labels
  for ``torch.profiler`` (``tools/analysis/benchmark.py``,
  ``tools/deployment/benchmark_onnx.py``, ``tools/analysis/gpu_checks.py``);
* ``tood.analysis.browse``: dataset images with their boxes after the
  pipeline;
* ``tood.analysis.complexity``: parameters and FLOPs of a config;
* ``tood.analysis.confusion``: the confusion matrix of test predictions;
* ``tood.analysis.pipeline_timing``: the time per image of each transform
  of a data pipeline;
* ``tood.analysis.results``: tables of finished runs.

Training curves are read and plotted by ``tood.visualization`` (the
training report hook draws them too).
"""
