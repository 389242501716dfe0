package redisstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrEvicting is New's refusal of a Redis server that may evict the store's keys under memory
// pressure (maxmemory set, maxmemory-policy other than noeviction), unless Config.AllowEviction.
// An evicted tombstone or subject cut undoes a logout, an evicted family ends a session, and an
// evicted hash key makes the next replica to start disagree with the others on every tombstone.
var ErrEvicting = errors.New("redisstore: the Redis server may evict the session store's keys")

// eviction is what a server says of its memory limit: its maxmemory (bytes, 0: none) and policy.
type eviction struct {
	addr      string // the node, on a Cluster
	maxmemory int64
	policy    string
}

// evicts reports whether the server may evict keys: a limit, and a policy that frees memory by
// deleting keys (every policy but noeviction; the volatile-* ones take keys with a time to live,
// which every family, tombstone and cut has).
func (e eviction) evicts() bool { return e.maxmemory > 0 && e.policy != "noeviction" }

func (e eviction) String() string {
	s := fmt.Sprintf("maxmemory %d bytes, maxmemory-policy %s", e.maxmemory, e.policy)
	if e.addr != "" {
		s = "node " + e.addr + ": " + s
	}
	return s
}

// checkEviction reads INFO memory of the server (every master of a Cluster) and returns the first
// that may evict keys, if any. A server that will not say (INFO not allowed to the user) is taken
// as not evicting: the check is a guard against a misconfiguration, not a permission the store needs.
func (s *Store) checkEviction(ctx context.Context) (eviction, bool, error) {
	var found []eviction
	read := func(ctx context.Context, c redis.Cmdable, addr string) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			if isNoPerm(err) {
				return nil
			}
			return err
		}
		e := parseEviction(info)
		e.addr = addr
		found = append(found, e)
		return nil
	}
	var err error
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster calls concurrently
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return read(ctx, c, c.Options().Addr)
		})
	} else {
		err = read(ctx, s.rdb, "")
	}
	if err != nil {
		return eviction{}, false, err
	}
	for _, e := range found {
		if e.evicts() {
			return e, true, nil
		}
	}
	return eviction{}, false, nil
}

// parseEviction reads maxmemory and maxmemory_policy from an INFO memory answer.
func parseEviction(info string) eviction {
	var e eviction
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		switch k {
		case "maxmemory":
			e.maxmemory, _ = strconv.ParseInt(v, 10, 64)
		case "maxmemory_policy":
			e.policy = v
		}
	}
	return e
}

// Evicting describes the server's eviction settings when it may evict the store's keys and the
// Store was started anyway (Config.AllowEviction), for a warning at start-up; "" otherwise.
func (s *Store) Evicting() string { return s.evicting }
