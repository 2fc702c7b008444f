"""Node weights of the `gcp` strategy: how much each concept node counts.

Before any training, a node counts by how close it is to the output node
(`default_node_weights`). After a training, it counts by its counterfactual impact
(`criticality_weights`). This module does not compute the impacts:
`gcp.training.counterfactual_impact` does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import networkx as nx

from gcp.exceptions import AcquisitionError
from gcp.graph import ConceptGraph

logger = logging.getLogger(__name__)


def default_node_weights(graph: ConceptGraph) -> dict[str, float]:
    """Weigh each node by its reach to the output node: ``w_i ∝ 1 / (1 + d_i)``.

    ``d_i`` is the number of edges on the shortest directed path from node i to the
    output node (0 for the output node itself). The weights sum to 1.

    Parameters
    ----------
    graph : ConceptGraph

    Returns
    -------
    dict of node name to float
        In ``graph.names`` order.

    Examples
    --------
    For a chain ``a -> b -> out`` the raw weights are 1/3, 1/2 and 1, so the output
    node gets 6/11.
    """
    distances = nx.shortest_path_length(graph.to_networkx().reverse(copy=True), graph.output)
    raw = {name: 1.0 / (1.0 + distances[name]) for name in graph.names}
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


def criticality_weights(
    impacts: Mapping[str, float], *, graph: ConceptGraph | None = None
) -> dict[str, float]:
    """Normalise counterfactual impacts into node weights that sum to 1.

    Negative impacts (fixing the node made the loss worse) are clipped to 0. When every
    clipped impact is 0, the weights fall back to `default_node_weights` if `graph` is
    given, else to equal weights over the names in `impacts`.

    `gcp.training.counterfactual_impact` leaves the output node out, because fixing it
    would set the label itself. So when `graph` is given and `impacts` has no entry for
    the output node, the output node keeps its `default_node_weights` share and the
    other nodes split the rest in proportion to their clipped impacts.

    Parameters
    ----------
    impacts : mapping of node name to float
        ``delta_i = L(full) - L(do(c_i = teacher value))`` per node, for example from
        `gcp.training.counterfactual_impact`.
    graph : ConceptGraph, optional
        When given, every name in `impacts` must be one of its nodes, and nodes missing
        from `impacts` get weight 0.

    Returns
    -------
    dict of node name to float
        In ``graph.names`` order when `graph` is given, else in the order of `impacts`.

    Raises
    ------
    AcquisitionError
        If an impact is not a finite number, a name is not a node of `graph`, or
        `impacts` is empty and no graph is given.
    """
    clipped: dict[str, float] = {}
    for name, value in impacts.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value
        ):
            raise AcquisitionError(
                f"invalid impact {value!r} for node {name!r}: impacts must be finite numbers"
            )
        clipped[str(name)] = max(float(value), 0.0)
    output_share = None  # set when the output node keeps its default share
    if graph is not None:
        unknown = [name for name in clipped if name not in graph]
        if unknown:
            raise AcquisitionError(
                f"node weights contain unknown nodes {unknown} (the graph has {graph.names}): "
                "recompute the weights after training on this graph, or pass None"
            )
        if graph.output not in clipped:
            output_share = default_node_weights(graph)[graph.output]
        clipped = {name: clipped.get(name, 0.0) for name in graph.names}
    elif not clipped:
        raise AcquisitionError("no impacts given: pass at least one node, or a graph")
    total = sum(clipped.values())
    if total <= 0:
        if graph is not None:
            logger.info("all node impacts are <= 0, so the default reach-based weights apply")
            return default_node_weights(graph)
        return {name: 1.0 / len(clipped) for name in clipped}
    if output_share is None:
        return {name: value / total for name, value in clipped.items()}
    weights = {name: (1.0 - output_share) * value / total for name, value in clipped.items()}
    weights[graph.output] = output_share
    return weights


def resolve_node_weights(
    graph: ConceptGraph,
    node_weights: Mapping[str, float] | None,
    *,
    available: Iterable[str],
    use_node_weights: bool,
) -> dict[str, float]:
    """Return the weights the `gcp` score uses, over the nodes the student predicts.

    With ``use_node_weights=False`` every available node weighs the same. Otherwise the
    weights come from `node_weights` (normalised by `criticality_weights`) or, when it
    is None, from `default_node_weights`. They are restricted to `available` and
    normalised again. If none of the weight falls on an available node, the available
    nodes weigh the same.
    """
    names = [name for name in graph.names if name in set(available)]
    if not names:
        raise AcquisitionError(
            f"the student predicts none of the graph's nodes {graph.names}: "
            "train a student on this graph first"
        )
    if use_node_weights:
        if node_weights is None:
            full = default_node_weights(graph)
        else:
            full = criticality_weights(node_weights, graph=graph)
        weights = {name: full[name] for name in names}
        total = sum(weights.values())
        if total > 0:
            return {name: value / total for name, value in weights.items()}
        logger.info("no node weight falls on a node the student predicts, so all weigh the same")
    return {name: 1.0 / len(names) for name in names}
