"""The splat fit's block-Jacobi preconditioner: exact blocks of F^T W F, their regularised inverses, and a
CG that needs fewer iterations for the same answer."""

import pytest
import torch

from sync_canvas.assets.splat_cameras import fit_orbit
from sync_canvas.assets.splat_procedural import procedural_splat_scene
from sync_canvas.projectors.solve import BlockJacobi, conjugate_gradient
from sync_canvas.projectors.splat import SplatProjector

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def projector():
    scene = procedural_splat_scene(600, seed=1)
    cams = fit_orbit(scene.means, scene.opacities, n_views=5, width=40, height=40)
    return SplatProjector.from_scene(scene, cams)


def dense_normal(projector, views):
    """F^T W F ``[G, G]`` float64 in the weights' column order, from the dense forward matrices."""
    wts = projector.weights
    rows = torch.cat([c.forward.to_dense() for c in wts.chunks]).double().reshape(wts.n_views, -1, wts.n_gaussians)
    f = rows[views].reshape(-1, wts.n_gaussians)
    return f.T @ (wts.alpha[views].reshape(-1, 1).double() * f)


def block_diagonal(a, block):
    g = a.shape[0]
    out = torch.zeros(-(-g // block), block, block, dtype=a.dtype)
    for k in range(out.shape[0]):
        lo, hi = k * block, min(k * block + block, g)
        out[k, : hi - lo, : hi - lo] = a[lo:hi, lo:hi]
    return out


@pytest.mark.parametrize("views", [[0, 1, 2, 3, 4], [3, 1]])
@pytest.mark.parametrize("block", [1, 8, 16])
def test_blocks_are_the_block_diagonal_of_the_normal_matrix(projector, views, block):
    blocks = projector.weights.normal_blocks(views, block=block, slice_entries=5000, stride=1)  # many row slices
    expected = block_diagonal(dense_normal(projector, views), block)
    assert blocks.dtype == torch.float32 and blocks.shape == expected.shape
    torch.testing.assert_close(blocks.double(), expected, atol=1e-5 * float(expected.abs().max()), rtol=1e-5)
    if block > 1:  # off-diagonal couplings exist: the blocks are not a diagonal
        assert float(expected[:, 0, 1:].abs().max()) > 0


def test_blocks_from_a_sample_of_rows_keep_the_exact_diagonal_and_stay_positive():
    """Where the gaussians have many entries (large splats at 512^2) the pairs are summed over a sample of
    the rows and each block rescaled to the exact diagonal: still positive semi-definite, close to the
    exact blocks, and a CG preconditioned by them needs about as many iterations."""
    scene = procedural_splat_scene(1000, seed=1)
    projector = SplatProjector.from_scene(scene, fit_orbit(scene.means, scene.opacities, n_views=8, width=128, height=128))
    assert projector.weights.n_entries > 4 * 400 * 1000  # 1666 entries per splat: 400 or more sampled with stride 4
    exact = projector.weights.normal_blocks(block=16, stride=1)
    sampled = projector.weights.normal_blocks(block=16, stride=4)
    torch.testing.assert_close(sampled.diagonal(dim1=1, dim2=2), exact.diagonal(dim1=1, dim2=2), rtol=1e-5, atol=1e-6)
    assert float(torch.linalg.eigvalsh(sampled.double()).min()) > -1e-5 * float(exact.abs().max())
    off = ~torch.eye(16, dtype=torch.bool)
    assert float((sampled - exact)[:, off].norm() / exact[:, off].norm()) < 0.35
    gen = torch.Generator().manual_seed(3)
    views = projector.project(torch.rand(3, 1000, generator=gen)) + 0.05 * torch.randn(8, 3, 128, 128, generator=gen)
    rhs = projector.adjoint(views * projector.alpha_maps())
    covered = projector.coverage()
    its = []
    for blocks in (exact, sampled, projector.weights.normal_blocks(block=1)):
        pre = BlockJacobi(blocks.clone(), covered, projector.weights.order)
        _, report = conjugate_gradient(lambda v: projector._normal_operator(v, torch.arange(8)), rhs,
                                       torch.zeros(3, 1000), pre, covered.float().unsqueeze(0), 1e-5, 500)
        its.append(report.iterations)
    assert its[1] <= 1.15 * its[0] + 2 and its[1] < 0.8 * its[2]  # measured: 41 exact, 40 sampled, 69 Jacobi


def test_block_jacobi_inverts_each_block_on_the_solved_unknowns():
    gen = torch.Generator().manual_seed(0)
    g, b = 10, 4
    factors = torch.randn(3, b, b, generator=gen, dtype=torch.float64)
    blocks = factors @ factors.transpose(1, 2) + torch.eye(b)
    blocks[2, 1] = blocks[2, :, 1] = 0  # a singular block (an unknown no pixel sees)
    mask = torch.ones(g, dtype=torch.bool)
    mask[5] = False
    order = torch.randperm(g, generator=gen)
    pre = BlockJacobi(blocks.float().clone(), mask, order, ridge=0.0)
    r = torch.randn(2, g, generator=gen)
    y = pre(r)
    inner = r[:, order]  # the blocks' numbering
    expected = torch.zeros(2, 12)
    solved = torch.zeros(12, dtype=torch.bool)
    solved[:g] = mask[order]
    for k in range(2):  # regular blocks: the inverse of the block restricted to its solved unknowns
        keep = solved[k * b : k * b + b]
        sub = blocks[k][keep][:, keep]
        expected[:, k * b : k * b + b][:, keep] = torch.linalg.solve(sub, inner[:, k * b : k * b + b][:, keep].double().T).T.float()
    # the singular block (unknowns 8, 9 and two padding slots; 9 has a zero row) falls back to its diagonal
    d = blocks[2].diagonal()
    expected[:, 8:10] = inner[:, 8:10] * torch.where(d[:2] > 0, 1 / d[:2].clamp_min(1e-30), 0).float()
    back = torch.empty_like(y).index_copy_(1, order, expected[:, :g])
    torch.testing.assert_close(y, back, atol=1e-4, rtol=1e-4)
    assert float(y[:, 5].abs().max()) == 0  # unsolved unknowns get no update
    # the singular block never gives inf / nan
    assert torch.isfinite(pre.inverse).all()


def test_block_jacobi_cg_reaches_the_jacobi_answer_in_fewer_iterations(projector):
    gen = torch.Generator().manual_seed(2)
    views = projector.project(torch.rand(3, 600, generator=gen)) + 0.05 * torch.randn(5, 3, 40, 40, generator=gen)
    ids = torch.arange(5)
    rhs = projector.adjoint(views * projector.alpha_maps(), ids)
    covered = projector.coverage()
    mask = covered.float().unsqueeze(0)
    jacobi = mask / projector.weights.normal_blocks(block=1).reshape(-1)[:600].index_select(
        0, torch.argsort(projector.weights.order)).clamp_min(1e-12).unsqueeze(0)
    block = BlockJacobi(projector.weights.normal_blocks(block=16), covered, projector.weights.order)

    def operator(v):
        return projector._normal_operator(v, ids)

    start = torch.zeros(3, 600)
    z_j, rep_j = conjugate_gradient(operator, rhs, start, jacobi, mask, 1e-5, 500)
    z_b, rep_b = conjugate_gradient(operator, rhs, start, block, mask, 1e-5, 500)
    assert rep_j.converged and rep_b.converged
    assert rep_b.iterations < 0.75 * rep_j.iterations
    pw = projector.alpha_maps()
    diff = (projector.project(z_b) - projector.project(z_j)).pow(2) * pw
    assert float(diff.sum() / (pw.sum() * 3)) ** 0.5 < 1e-4


def test_fixed_terms_come_with_the_build_and_a_runs_copy_reuses_them_without_writing_back(projector):
    """The all-views terms (every run fits over all views at least once) are built with the projector;
    a run's copy starts from them, and what it adds (another selection) stays in the copy."""
    first = projector.weights.cache[None]
    assert isinstance(first[1], BlockJacobi)
    assert projector._fixed_terms(torch.arange(5), True) is first
    copy = projector.to("cpu", copy=True)  # what each sampling run works on
    assert copy is not projector and copy.weights is not projector.weights
    assert copy._fixed_terms(torch.arange(5), True) is first
    part = copy._fixed_terms(torch.tensor([1, 3]), False)
    assert (1, 3) in copy.weights.cache and (1, 3) not in projector.weights.cache
    # a view subset (StochSync's groups cycle through many) gets the Jacobi diagonal, cheap to build
    assert part[1].inverse.shape[1:] == (1, 1) and first[1].inverse.shape[1] > 1
    for k in range(40):  # more subsets than the cache keeps: the all-views terms are never evicted
        copy._fixed_terms(torch.tensor([k % 5, (k + 1 + k // 5) % 5]), False)
    assert copy.weights.cache[None] is first and len(copy.weights.cache) <= 33
    assert projector.weights.block_size() in (1, 2, 4, 8, 16)
