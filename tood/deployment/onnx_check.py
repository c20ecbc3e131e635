"""What an ``.onnx`` file must be before ONNX Runtime opens it.

An ONNX model may keep tensors outside the file ("external data": a path
and an offset in each tensor). ONNX Runtime reads those files when the
session is created, so a crafted model could copy any file the user can
read into its outputs, and from there into the json ``tools/infer.py``
writes; only onnxruntime 1.24 and newer refuse paths that leave the
model's folder. tood's exporter never writes external data, so
:func:`check_onnx_file` refuses any, together with files that are missing,
not ONNX, or not written by tood's exporter, reading the file with the
``onnx`` package alone (``load_external_data=False``: nothing else is
opened) before any session exists.
"""
import os.path as osp
from typing import Dict, FrozenSet, Iterator, NamedTuple, Optional, Tuple

from .onnx_export import FORMAT, ExportError


def _node_tensors(node) -> Iterator:
    """The tensors in a node's attributes, subgraphs included."""
    for attribute in node.attribute:
        if attribute.HasField('t'):
            yield attribute.t
        yield from attribute.tensors
        sparse = list(attribute.sparse_tensors)
        if attribute.HasField('sparse_tensor'):
            sparse.append(attribute.sparse_tensor)
        for tensor in sparse:
            yield tensor.values
            yield tensor.indices
        graphs = list(attribute.graphs)
        if attribute.HasField('g'):
            graphs.append(attribute.g)
        for graph in graphs:
            yield from _graph_tensors(graph)


def _graph_tensors(graph) -> Iterator:
    """Every tensor a graph stores: initializers, sparse initializers and
    node attributes (``Constant`` values, subgraphs of ``If`` / ``Loop``)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


class OnnxFileInfo(NamedTuple):
    """What a runtime needs from an exported file besides its graph.

    Attributes:
        metadata: the ``tood.*`` metadata strings (``onnx_export``).
        input_hw: (H, W) of the ``image`` input; None where it is free (a
            dynamic export).
        op_types: the operator types of the main graph (a runtime
            refuses those it lacks before reading the file).
    """
    metadata: Dict[str, str]
    input_hw: Tuple[Optional[int], Optional[int]]
    op_types: FrozenSet[str]


def check_onnx_file(path: str) -> OnnxFileInfo:
    """Refuse an ``.onnx`` file that is not a self-contained export of
    tood's (see the module docstring).

    Returns:
        Its metadata, input size and operator types, read while checking:
        every runtime reads them from here, so that none depends on how a
        runtime exposes ONNX metadata.
    Raises:
        ExportError: naming ``path``: it does not exist, is not an ONNX
            model, was not written by ``tools/deployment/export_onnx.py``
            (no ``tood.format`` metadata of this version), or has tensors
            stored in other files.
    """
    import onnx
    from onnx import TensorProto

    if not osp.isfile(path):
        raise ExportError(
            f'{path} does not exist' if not osp.exists(path) else
            f'{path} is not a file')
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as error:  # protobuf's DecodeError, onnx's own
        raise ExportError(
            f'{path} is not an ONNX model: it cannot be parsed '
            f'({type(error).__name__}: {error})') from None
    tensors = list(_graph_tensors(model.graph))
    for function in model.functions:
        for node in function.node:
            tensors += list(_node_tensors(node))
    external = sorted({
        tensor.name or '(unnamed)'
        for tensor in tensors if tensor.data_location == TensorProto.EXTERNAL
        or len(tensor.external_data)
    })
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    if metadata.get('tood.format') != FORMAT:
        raise ExportError(
            f'{path} was not written by tood\'s exporter (format '
            f'{metadata.get("tood.format")!r}, expected {FORMAT!r}); export '
            'it with tools/deployment/export_onnx.py')
    if external:
        shown = ', '.join(external[:5]) + (' ...' if len(external) > 5 else
                                           '')
        raise ExportError(
            f'{path} keeps {len(external)} tensor(s) in other files '
            f'(external data: {shown}); tood\'s exporter never does, so '
            'the file was altered. Refusing to open it: ONNX Runtime would '
            'read whatever files those tensors name. Export the model '
            'again with tools/deployment/export_onnx.py')
    image = next((i for i in model.graph.input if i.name == 'image'), None)
    if image is None:
        raise ExportError(
            f'{path} has no input named image; export it again with '
            'tools/deployment/export_onnx.py')
    dims = image.type.tensor_type.shape.dim
    input_hw = tuple(d.dim_value if d.HasField('dim_value') else None
                     for d in dims[1:3])
    return OnnxFileInfo(metadata, input_hw,
                        frozenset(node.op_type for node in model.graph.node))
