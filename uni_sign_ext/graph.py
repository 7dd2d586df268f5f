"""Skeleton graphs of the four keypoint parts, built the way ST-GCN builds them.

'distance' partitioning with max_hop 1 gives K = 2 adjacency matrices: A[0] holds the
self-links, A[1] the 1-hop neighbours, both taken from the column-normalised adjacency.
"""
import numpy as np

BODY_EDGES = [(0, 1), (0, 2), (0, 3), (0, 4), (3, 5), (5, 7), (4, 6), (6, 8)]
HAND_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
              (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18),
              (18, 19), (19, 20)]
FACE_EDGES = ([(i, i + 1) for i in range(0, 8)] + [(i, i + 1) for i in range(9, 16)]
              + [(16, 9)] + [(17, i) for i in range(0, 17)])

PART_GRAPHS = {
    "body": (9, BODY_EDGES),
    "left": (21, HAND_EDGES),
    "right": (21, HAND_EDGES),
    "face_all": (18, FACE_EDGES),
}


def hop_distance(num_node, edges, max_hop=1):
    """Shortest-path hop count between nodes, inf beyond max_hop."""
    adjacency = np.eye(num_node)
    for i, j in edges:
        adjacency[i, j] = adjacency[j, i] = 1
    dist = np.full((num_node, num_node), np.inf)
    reach = [np.linalg.matrix_power(adjacency, d) for d in range(max_hop + 1)]
    for d in range(max_hop, -1, -1):
        dist[reach[d] > 0] = d
    return dist


def normalize_digraph(adjacency):
    """A·D⁻¹ with D the column sums (columns that sum to 0 stay 0)."""
    column_sums = adjacency.sum(0)
    inv = np.zeros_like(column_sums)
    inv[column_sums > 0] = 1.0 / column_sums[column_sums > 0]
    return adjacency @ np.diag(inv)


def build_adjacency(num_node, edges, max_hop=1):
    """The (max_hop + 1, V, V) stack of hop-split, normalised adjacency matrices."""
    dist = hop_distance(num_node, edges, max_hop)
    normalized = normalize_digraph((dist <= max_hop).astype(np.float64))
    stack = np.zeros((max_hop + 1, num_node, num_node))
    for hop in range(max_hop + 1):
        stack[hop][dist == hop] = normalized[dist == hop]
    return stack.astype(np.float32)


def part_adjacency(part):
    """Adjacency stack for one of 'body', 'left', 'right', 'face_all'."""
    num_node, edges = PART_GRAPHS[part]
    return build_adjacency(num_node, edges)
