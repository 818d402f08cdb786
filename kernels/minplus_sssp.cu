// Batched single-source shortest paths as repeated sparse min-plus products (pull-style
// Bellman-Ford), the all-pairs step of port2dist: D_next = min(D, D (min,+) W) over a CSR graph.
//
// Thread-to-data mapping: one thread per (source row r, node v) of the dense R x N distance block;
// the thread pulls over v's CSR neighbours u (the graph is symmetric, so out-neighbours are also
// in-neighbours) and writes min(D[r, v], min_u D[r, u] + len(u, v)) into the *other* buffer
// (Jacobi iteration: reads and writes never alias, so no atomics are needed and the result of an
// iteration does not depend on thread scheduling).
//
// Preconditions: dist_in/dist_out are R x N row-major float32 (inf where unreached, 0 at each
// row's source); indptr has N + 1 int64 entries; nbr/len have indptr[N] entries; lengths are
// positive and finite. `changed` is a device int set to 1 by any thread that improved a distance
// (all writers store the same value, so the race is benign); the host iterates until it stays 0.
//
// Rounding: each candidate is one float32 addition (__fadd_rn, so no contraction or fast-math can
// change it) and min is exact, so after convergence D[r, v] is the minimum over paths of the
// left-to-right float32 sum of the path's lengths: exactly what the NumPy twin
// gpsgpu.ops.portdist_cpu.minplus_relax computes, bit for bit.

extern "C" __global__ void minplus_relax(const float* __restrict__ dist_in,
                                         float* __restrict__ dist_out,
                                         const long long* __restrict__ indptr,
                                         const int* __restrict__ nbr,
                                         const float* __restrict__ len,
                                         const long long n_rows,
                                         const long long n_nodes,
                                         int* __restrict__ changed) {
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (tid >= n_rows * n_nodes) {
        return;
    }
    const long long r = tid / n_nodes;
    const long long v = tid - r * n_nodes;
    const float* row = dist_in + r * n_nodes;
    const float old = row[v];
    float best = old;
    const long long end = indptr[v + 1];
    for (long long e = indptr[v]; e < end; ++e) {
        const float du = row[nbr[e]];
        const float cand = __fadd_rn(du, len[e]);
        best = fminf(best, cand);
    }
    dist_out[tid] = best;
    if (best < old) {
        *changed = 1;
    }
}
