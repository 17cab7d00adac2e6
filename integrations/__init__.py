"""Adapters of vs-plugin to other compression toolkits, installed as ``vs_plugin.integrations``.

Each subpackage only translates between the toolkit and the core in ``vs_plugin``: NNI's
compressor interface (``vs_plugin.integrations.nni``) and torch-pruning's dependency graph
(``vs_plugin.integrations.torch_pruning``). Import them explicitly; importing this package
imports neither toolkit.
"""
