package config

import "strings"

// unknown reports a key that is not one of known, suggesting the known key it most likely
// misspells: a configuration is read by people, and "did you mean" turns a hunt through the
// reference into a one-word fix.
func (p *parser) unknown(key, prov, loc string, known ...string) {
	field := key[strings.LastIndexByte(key, '.')+1:]
	if s := suggest(field, known); s != "" {
		p.add(key, prov, loc, "unknown key: did you mean %q? (known: %s)", s, strings.Join(known, ", "))
		return
	}
	p.add(key, prov, loc, "unknown key (known: %s)", strings.Join(known, ", "))
}

// suggest returns the candidate closest to word by edit distance (insertions, deletions,
// substitutions and transpositions of adjacent characters, case ignored), if it is close enough to
// be a misspelling: at most one edit for words up to four characters, two up to eight, three
// beyond. Ties go to the earlier candidate.
func suggest(word string, candidates []string) string {
	w := strings.ToLower(word)
	limit := 3
	switch n := len(w); {
	case n <= 4:
		limit = 1
	case n <= 8:
		limit = 2
	}
	best, bestD := "", limit+1
	for _, c := range candidates {
		if d := editDistance(w, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b (bytes).
func editDistance(a, b string) int {
	// Three rows: the one before the previous is needed for transpositions.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
