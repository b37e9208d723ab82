package events

// Hash64 is the hash every hail process must agree on: FNV-1a with
// murmur3's finalizer (FNV alone spreads similar strings, "user-1" and
// "user-2", poorly over the high bits). No per-process seed: two routers
// put a key on the same instance, two discovery nodes agree on an owner.
func Hash64(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Owner is the discovery node that owns an instance among the live nodes:
// rendezvous (highest random weight) hashing of (node id, instance id).
// Every node computes the same answer from the same set, and a node
// joining or leaving moves only the instances it gains or held. "" when
// nodes is empty.
func Owner(nodes []string, instanceID string) string {
	var best string
	var bestScore uint64
	for _, n := range nodes {
		s := Hash64(n + "/" + instanceID)
		if best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}
