"""Graph matrices against values derived by hand from the ST-GCN construction."""
import numpy as np
import pytest

from uni_sign_ext.graph import part_adjacency


def test_body_adjacency_by_hand():
    A = part_adjacency("body")
    assert A.shape == (2, 9, 9)
    # Node degrees with self-loops: node 0 has 4 neighbours → column sum 5; nodes 3,4,5,6 → 3; 1,2,7,8 → 2.
    expected_self = np.diag([1 / 5, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 2, 1 / 2])
    np.testing.assert_allclose(A[0], expected_self, rtol=1e-6)
    hop = np.zeros((9, 9))
    column_sum = {0: 5, 1: 2, 2: 2, 3: 3, 4: 3, 5: 3, 6: 3, 7: 2, 8: 2}
    for i, j in [(0, 1), (0, 2), (0, 3), (0, 4), (3, 5), (5, 7), (4, 6), (6, 8)]:
        hop[i, j] = 1 / column_sum[j]
        hop[j, i] = 1 / column_sum[i]
    np.testing.assert_allclose(A[1], hop, rtol=1e-6)


@pytest.mark.parametrize("part,nodes", [("body", 9), ("left", 21), ("right", 21), ("face_all", 18)])
def test_columns_sum_to_one_and_symmetric_pattern(part, nodes):
    A = part_adjacency(part)
    assert A.shape == (2, nodes, nodes)
    np.testing.assert_allclose(A.sum(0).sum(0), np.ones(nodes), rtol=1e-6)
    assert ((A[1] > 0) == (A[1] > 0).T).all()
    assert (np.diag(A[1]) == 0).all() and (A[0] == np.diag(np.diag(A[0]))).all()


def test_face_graph_edges():
    A = part_adjacency("face_all")
    linked = A[1] > 0
    assert linked[17, :17].all()  # node 17 (nose, index 53) links every other face node
    assert linked[16, 9] and linked[8, 7] and not linked[8, 9]
    assert linked.sum() == 2 * (8 + 7 + 1 + 17)


def test_hand_graph_wrist_has_five_fingers():
    A = part_adjacency("left")
    assert sorted(np.flatnonzero(A[1][:, 0])) == [1, 5, 9, 13, 17]
    np.testing.assert_allclose(A[0][0, 0], 1 / 6)


def test_graph_conv_and_block_end_in_relu():
    import torch

    from uni_sign_ext.stgcn import GraphConv, STGCNBlock

    torch.manual_seed(0)
    A = torch.as_tensor(part_adjacency("body"), dtype=torch.float32)
    x = torch.randn(2, 3, 4, 9)
    conv = GraphConv(3, 8, A).eval()
    with torch.no_grad():
        mixed = torch.einsum("nkctv,kvw->nctw", conv.conv(x).view(2, 2, 8, 4, 9), conv.A)
        expected = torch.relu(conv.bn(mixed))
        torch.testing.assert_close(conv(x), expected)
        assert (conv.bn(mixed) < 0).any()  # so the ReLU has something to cut
        block = STGCNBlock(3, 8, A, temporal_kernel=5).eval()
        pre = block.tcn(block.gcn(x)) + block.residual(x)
        torch.testing.assert_close(block(x), torch.relu(pre))
        assert (pre < 0).any()
