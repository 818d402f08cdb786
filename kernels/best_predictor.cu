// best_predictor: for every slot (service), the smallest preference rank, at least lower[slot], among
// the hitrate-table entries of the pairs that target it. The rank orders candidates by (hitrate
// desc, p1 asc, feature string asc), so with lower = 0 the minimum is GPS's best predictor, and
// k passes, each with lower = the previous pass's rank + 1, give a slot's k best predictors (a
// table entry targets a slot at most once: its (feature, p1) pair is one of the host's rows).
//
// Twin: gpsgpu.ops.cpu.best_predictor (NumPy), which defines the exact output.
//
// Layout: the host CSR of expand_pairs.cu (row_slot, row_fid, slot_port, slot_first, slot_count),
// plus
//   table_keys[n_table]  uint64  sorted, unique pair keys fid << 32 | p1 << 16 | p2 with a hitrate
//   table_rank[n_table]  uint32  preference rank of each table key (smaller is better)
//   lower[n_slots]       uint32  the smallest rank each slot may take (0: any; 0xFFFFFFFF: none)
//   best[n_slots]        uint32  in/out: current best rank per slot (0xFFFFFFFF = none yet)
//
// Thread-to-data mapping: one thread per feature row i (grid-stride loop). For each other slot t
// of the row's host it builds the pair key, binary-searches it in table_keys (O(log n_table)) and,
// when found with a rank of at least lower[t], lowers best[t] to the entry's rank.
//
// Preconditions: as expand_pairs.cu (hosts of 2..max_host_ports ports, so a thread's loop is short);
// table_keys sorted ascending without duplicates.
// Atomics: atomicMin on best[t] (32-bit unsigned): many rows of one host target the same slot.
// The result does not depend on the order of the updates (min is commutative).

extern "C" __global__ void best_predictor(
    const long long* __restrict__ row_slot,
    const unsigned int* __restrict__ row_fid,
    const unsigned short* __restrict__ slot_port,
    const long long* __restrict__ slot_first,
    const long long* __restrict__ slot_count,
    const unsigned long long* __restrict__ table_keys,
    const unsigned int* __restrict__ table_rank,
    long long n_table,
    const unsigned int* __restrict__ lower,
    unsigned int* __restrict__ best,
    long long n_rows)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n_rows;
         i += (long long)blockDim.x * gridDim.x) {
        const long long slot = row_slot[i];
        const long long first = slot_first[slot];
        const long long count = slot_count[slot];
        const long long own = slot - first;
        const unsigned long long base =
            ((unsigned long long)row_fid[i] << 32) | ((unsigned long long)slot_port[slot] << 16);
        for (long long j = 0; j < count - 1; ++j) {
            const long long target = first + j + (j >= own ? 1 : 0);
            const unsigned long long key = base | (unsigned long long)slot_port[target];
            long long lo = 0, hi = n_table;  // first index with table_keys[index] >= key
            while (lo < hi) {
                const long long mid = lo + ((hi - lo) >> 1);
                if (table_keys[mid] < key) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if (lo < n_table && table_keys[lo] == key && table_rank[lo] >= lower[target]) {
                atomicMin(best + target, table_rank[lo]);
            }
        }
    }
}
