package pgstore

import "context"

// TestStep is a schema step the tests add after the real ones, to exercise migration with real DDL.
type TestStep struct {
	To, Compatible int
	// Stmts gets the quoted table names.
	Stmts func(families, tombstones, meta string) []string
}

// NewWithSteps is New with extra steps after the package's own.
func NewWithSteps(ctx context.Context, cfg Config, extra ...TestStep) (*Store, error) {
	all := append([]step(nil), steps...)
	for _, e := range extra {
		all = append(all, step{to: e.To, compatible: e.Compatible, stmts: func(t tables) []string {
			return e.Stmts(t.fam, t.tomb, t.meta)
		}})
	}
	return newStore(ctx, cfg, all)
}

// FeedChannel is the notification channel of s.
func FeedChannel(s *Store) string { return s.channel }
