package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	kvpb "github.com/keyfort/keyfort/internal/kvexamplepb/v1"
	"github.com/keyfort/keyfort/session/dpop"
)

// benchOptions are the flags of "provider-host bench".
type benchOptions struct {
	sessions    int
	concurrency int
	duration    time.Duration
	replicas    int
	redisURL    string
	postgresURL string
	guardedBin  string
	mix         string
	jsonOut     string
	progress    string
	keepLogs    bool
	dpop        bool // sessions bound to a DPoP key of each simulated client, proofs on every call
	dpopNonce   bool // the replicas started here require DPoP nonces (identity.session.dpop.nonce)

	// services started elsewhere, trusting an issuer that "provider-host bench issuer" serves
	runtimeAddrs []string
	guardedAddr  string
	issuerURL    string
	issuerKey    string
	clientID     string
	idp          string
}

func (o benchOptions) external() bool { return len(o.runtimeAddrs) > 0 }

func newBenchCmd() *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench [--sessions N] [--duration D] [--guarded-bin PATH] [--replicas R --redis-url URL]",
		Short: "Load-test the identity runtime (and a guarded service) over gRPC with many concurrent sessions",
		Long: `Stand up a complete deployment on loopback and drive it with many concurrent sessions:

  - an OpenID Provider (EdDSA ID tokens) that the services trust as identity provider "google";
  - R "provider-host serve" processes (this binary) sharing one session signing key through the env
    provider, and, with R > 1, one Redis session store (--redis-url);
  - with --guarded-bin, the guarded key-value example service (examples/guarded-kv), whose
    interceptor turns each caller's ID token into a session with its own backend credentials.

Phase 1 starts every session (StartIdentitySession). Phase 2 runs for --duration: each step takes a
session and, by the weights of --mix, makes a guarded call (Put then Get on the guarded service with
the session's ID token; without --guarded-bin, EvaluateIdentityPolicy on the runtime with its access
token), refreshes it (RefreshIdentitySession, rotating the refresh token), or logs it out
(EndIdentitySession; the next step starts it again with a new ID token). With R > 1 every call goes
to a replica chosen at random, so refreshes and logouts routinely land on a replica other than the
one that issued the token.

With --dpop each simulated client holds a DPoP key (ES256) and its session is bound to it: every
start, refresh, logout and guarded call on the runtime carries a fresh proof (and the guarded call
the access token with the DPoP scheme), so the figures include signing and checking proofs, and
with a shared store its replay cache. --dpop-nonce makes the replicas require server nonces too,
which the clients follow (a refused call is made again with the nonce, inside its latency).

To drive services started elsewhere instead, run "provider-host bench issuer --key FILE" first, start
them with identity.secrets.oidc.<idp>.issuer set to its URL, and pass --runtime-addr (repeat for
replicas), optionally --guarded-addr, and --issuer-url, --issuer-key FILE and --client-id.

It reports throughput and p50/p99/p99.9/max latency per operation, resident memory of each process it
started, and with Redis the store commands per operation. Any failed call makes the exit status
non-zero.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(0)
			defer stop()
			rep, err := runBench(ctx, o, cmd.ErrOrStderr())
			if rep != nil {
				rep.print(cmd.OutOrStdout())
				if o.jsonOut != "" {
					body, _ := json.MarshalIndent(rep, "", "  ")
					if werr := os.WriteFile(o.jsonOut, append(body, '\n'), 0o644); werr != nil && err == nil {
						err = werr
					}
				}
				if err == nil && rep.Errors > 0 {
					return fmt.Errorf("%d of %d calls failed", rep.Errors, rep.Calls)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.sessions, "sessions", 1000, "concurrent sessions to keep alive")
	f.IntVar(&o.concurrency, "concurrency", 64, "calls in flight at once")
	f.DurationVar(&o.duration, "duration", 30*time.Second, "length of the mixed phase")
	f.IntVar(&o.replicas, "replicas", 1, "serve processes; more than one needs --redis-url")
	f.StringVar(&o.postgresURL, "postgres-url", "", "PostgreSQL session store shared by the replicas (identity.session.postgres_url), in place of --redis-url")
	f.StringVar(&o.redisURL, "redis-url", "", "Redis session store shared by the replicas (identity.session.redis_url); the replicas' store commands are read from their metrics (with --runtime-addr, from Redis's INFO, which counts every client)")
	f.StringVar(&o.guardedBin, "guarded-bin", "", "built examples/guarded-kv binary to start and drive")
	f.StringVar(&o.mix, "mix", "guarded=80,refresh=15,logout=5", "weights of the mixed phase's operations")
	f.StringVar(&o.jsonOut, "json", "", "also write the report as JSON to this file")
	f.StringVar(&o.progress, "progress", "auto", "progress bar: auto (when stderr is a terminal), always, lines (one line every 5s) or never")
	f.BoolVar(&o.dpop, "dpop", false, "bind each session to a DPoP key of its simulated client (ES256): every start, refresh, logout and guarded call on the runtime carries a proof")
	f.BoolVar(&o.dpopNonce, "dpop-nonce", false, "with --dpop: the replicas started here require DPoP server nonces (identity.session.dpop.nonce), which the clients follow")
	f.BoolVar(&o.keepLogs, "keep-logs", false, "keep the services' logs and configuration (their directory is printed)")
	f.StringArrayVar(&o.runtimeAddrs, "runtime-addr", nil, "drive the identity runtime already serving gRPC here (repeat for replicas) instead of starting one; needs --issuer-url, --issuer-key, --client-id")
	f.StringVar(&o.guardedAddr, "guarded-addr", "", "with --runtime-addr: the guarded example service already serving here")
	f.StringVar(&o.issuerURL, "issuer-url", "", "with --runtime-addr: the URL of \"provider-host bench issuer\", which the services trust")
	f.StringVar(&o.issuerKey, "issuer-key", "", "with --runtime-addr: the key file that issuer serves")
	f.StringVar(&o.clientID, "client-id", "", "with --runtime-addr: the audience of the ID tokens (identity.secrets.oidc.<idp>.client_id)")
	f.StringVar(&o.idp, "idp", "google", "with --runtime-addr: the identity provider's name under identity.secrets.oidc")
	cmd.AddCommand(newBenchIssuerCmd())
	return cmd
}

func newBenchIssuerCmd() *cobra.Command {
	var listen, keyFile string
	cmd := &cobra.Command{
		Use:   "issuer --key FILE [--listen ADDR]",
		Short: "Serve the load generator's OpenID Provider, for services started before \"bench --runtime-addr\"",
		Long: `Serve OpenID discovery and a JWKS for an Ed25519 key kept in --key (created there when missing),
so that services started with identity.secrets.oidc.<idp>.issuer set to this URL accept the ID tokens
that "provider-host bench --runtime-addr ... --issuer-key FILE" mints with the same key. It serves
until interrupted. It signs nothing itself; anyone with the key file can mint tokens it vouches for,
so use it only for load tests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(0)
			defer stop()
			priv, err := benchIssuerKey(keyFile, true)
			if err != nil {
				return err
			}
			iss, err := startBenchIssuer(listen, "", priv)
			if err != nil {
				return err
			}
			defer iss.close()
			fmt.Fprintf(cmd.OutOrStdout(), "bench issuer: serving %s (key %s)\n", iss.url, keyFile)
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7443", "address to serve on")
	cmd.Flags().StringVar(&keyFile, "key", "", "Ed25519 key file (PKCS#8 PEM), created when missing")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// Operations of the load.
const (
	opStart = iota
	opGuarded
	opRefresh
	opLogout
	numOps
)

var opNames = [numOps]string{"start", "guarded", "refresh", "logout"}

// benchReport is what a run measured; it is printed and, with --json, written for scripts/loadtest.sh.
type benchReport struct {
	Sessions    int                  `json:"sessions"`
	Concurrency int                  `json:"concurrency"`
	Replicas    int                  `json:"replicas"`
	Store       string               `json:"store"`
	Guarded     bool                 `json:"guarded_service"`
	Mix         string               `json:"mix"`
	StartPhase  phaseReport          `json:"start_phase"`
	MixedPhase  phaseReport          `json:"mixed_phase"`
	Ops         map[string]*opReport `json:"ops"`
	Calls       int64                `json:"calls"`
	Errors      int64                `json:"errors"`
	RSSKiB      map[string]int64     `json:"rss_kib,omitempty"`
	// StoreCommandsPerCall is the shared store's commands (Redis commands, PostgreSQL statements)
	// of the mixed phase over its runtime calls (guarded calls to the guarded service excluded: it
	// keeps no state in the store). RedisCommandsPerCall is the same figure when the store is Redis.
	StoreCommandsPerCall float64 `json:"store_commands_per_runtime_call,omitempty"`
	RedisCommandsPerCall float64 `json:"redis_commands_per_runtime_call,omitempty"`
	CPUs                 int     `json:"cpus"`
	Interrupted          bool    `json:"interrupted,omitempty"`
	// External: the services were started elsewhere (--runtime-addr).
	External bool `json:"external,omitempty"`
	// DPoP: "on" when every session was bound to a DPoP key of its client (--dpop), "nonces" when
	// the replicas required server nonces too (--dpop-nonce).
	DPoP string `json:"dpop,omitempty"`

	redisDelta   int64 // Redis commands in the mixed phase
	guardedMixed int64 // guarded calls (all in the mixed phase)
}

type phaseReport struct {
	Seconds    float64 `json:"seconds"`
	Calls      int64   `json:"calls"`
	Throughput float64 `json:"calls_per_second"`
}

type opReport struct {
	Count      int64            `json:"count"`
	Errors     int64            `json:"errors"`
	Throughput float64          `json:"calls_per_second"`
	P50ms      float64          `json:"p50_ms"`
	P99ms      float64          `json:"p99_ms"`
	P999ms     float64          `json:"p999_ms"`
	MaxMs      float64          `json:"max_ms"`
	ErrorCodes map[string]int64 `json:"error_codes,omitempty"`
	FirstError string           `json:"first_error,omitempty"`
}

func parseMix(s string) ([numOps]int, error) {
	var w [numOps]int
	total := 0
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(val)
		i := slices.Index(opNames[:], name)
		if !ok || err != nil || n < 0 || i <= opStart {
			return w, fmt.Errorf("--mix %q: want comma-separated guarded=N, refresh=N and logout=N", s)
		}
		w[i] = n
		total += n
	}
	if total == 0 {
		return w, fmt.Errorf("--mix %q: the weights add up to zero", s)
	}
	return w, nil
}

func (o benchOptions) validate() error {
	switch {
	case o.sessions < 1:
		return errors.New("--sessions must be at least 1")
	case o.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case o.duration <= 0:
		return errors.New("--duration must be positive")
	case o.replicas < 1:
		return errors.New("--replicas must be at least 1")
	case o.external() && (o.issuerURL == "" || o.issuerKey == "" || o.clientID == ""):
		return errors.New("--runtime-addr needs --issuer-url, --issuer-key and --client-id: the services must trust the ID tokens the load generator mints")
	case o.external() && (o.replicas != 1 || o.guardedBin != ""):
		return errors.New("--runtime-addr drives services started elsewhere: --replicas and --guarded-bin start them here; use --guarded-addr")
	case o.replicas > 1 && o.redisURL == "" && o.postgresURL == "":
		return errors.New("--replicas > 1 needs --redis-url or --postgres-url: replicas share sessions through a store")
	case o.redisURL != "" && o.postgresURL != "":
		return errors.New("--redis-url and --postgres-url: choose one store")
	case o.external() && o.postgresURL != "":
		return errors.New("--postgres-url configures the replicas started here; it does not go with --runtime-addr")
	case !o.external() && (o.guardedAddr != "" || o.issuerURL != "" || o.issuerKey != "" || o.clientID != ""):
		return errors.New("--guarded-addr, --issuer-url, --issuer-key and --client-id go with --runtime-addr")
	case o.dpop && (o.guardedBin != "" || o.guardedAddr != ""):
		return errors.New("--dpop drives the runtime's own guarded calls: the guarded example takes ID tokens, which DPoP does not bind")
	case o.dpopNonce && !o.dpop:
		return errors.New("--dpop-nonce goes with --dpop")
	case o.dpopNonce && o.external():
		return errors.New("--dpop-nonce configures the replicas started here; services started elsewhere require nonces by their own configuration (the clients follow them either way)")
	}
	if !slices.Contains([]string{"auto", "always", "lines", "never"}, o.progress) {
		return fmt.Errorf("--progress %q: want auto, always, lines or never", o.progress)
	}
	_, err := parseMix(o.mix)
	return err
}

// benchUser is one simulated session; exactly one worker holds it at a time.
type benchUser struct {
	subject         string
	nonce           uint64
	ext             string // the ID token from the issuer
	access, refresh string
	started, put    bool
	key             *dpop.Key // with --dpop: the client's key, which its session is bound to
}

// benchTarget is the deployment under load.
type benchTarget struct {
	idp      string
	runtimes []pb.IdentityRuntimeServiceClient
	kv       kvpb.KeyValueServiceClient
	issuer   *benchIssuer
}

func (t *benchTarget) runtime(rng *rand.Rand) pb.IdentityRuntimeServiceClient {
	return t.runtimes[rng.IntN(len(t.runtimes))]
}

// call makes one call of u's to the runtime (invoke, with the options it is given): with a DPoP
// key, with a proof of it (carrying accessToken's hash when it is not "") and following the
// runtime's nonces (dpop.Key.Call); else as a bearer of accessToken, when it is not "".
func (u *benchUser) call(ctx context.Context, accessToken string, invoke func(ctx context.Context, opts ...grpc.CallOption) error) error {
	if u.key == nil {
		if accessToken != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+accessToken)
		}
		return invoke(ctx)
	}
	creds := grpc.PerRPCCredentials(benchProof{key: u.key, token: accessToken})
	return u.key.Call(ctx, func(ctx context.Context, opts ...grpc.CallOption) error {
		return invoke(ctx, append(opts, creds)...)
	})
}

// benchProof puts a DPoP proof of key on a call, and the access token (when there is one) with
// the DPoP scheme.
type benchProof struct {
	key   *dpop.Key
	token string
}

func (p benchProof) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	proof, err := p.key.GRPCProof(ctx, uri, p.token)
	if err != nil {
		return nil, err
	}
	md := map[string]string{dpop.Header: proof}
	if p.token != "" {
		md["authorization"] = dpop.Scheme + " " + p.token
	}
	return md, nil
}

func (benchProof) RequireTransportSecurity() bool { return false } // loopback

// step runs one operation for u and returns which it was.
func (t *benchTarget) step(ctx context.Context, rng *rand.Rand, u *benchUser, op int) error {
	rt := t.runtime(rng) // one replica for the step: a call refused for want of a nonce is made again there
	switch op {
	case opStart:
		u.nonce++
		ext, err := t.issuer.mint(u.subject, u.nonce)
		if err != nil {
			return err
		}
		var res *pb.StartIdentitySessionResponse
		err = u.call(ctx, "", func(ctx context.Context, opts ...grpc.CallOption) (err error) {
			res, err = rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{
				Subject: u.subject, Tenant: "bench", IdentityProvider: t.idp, ExternalToken: ext}, opts...)
			return err
		})
		if err != nil {
			return err
		}
		if u.key != nil && res.GetTokens().GetTokenType() != dpop.Scheme {
			return fmt.Errorf("the runtime did not bind the session to the client's DPoP key (token_type %q)", res.GetTokens().GetTokenType())
		}
		u.ext, u.access, u.refresh, u.started, u.put = ext, res.GetTokens().GetAccessToken(), res.GetTokens().GetRefreshToken(), true, false
	case opRefresh:
		var res *pb.RefreshIdentitySessionResponse
		err := u.call(ctx, "", func(ctx context.Context, opts ...grpc.CallOption) (err error) {
			res, err = rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: u.refresh}, opts...)
			return err
		})
		if err != nil {
			return err
		}
		u.access, u.refresh = res.GetTokens().GetAccessToken(), res.GetTokens().GetRefreshToken()
	case opLogout:
		u.started = false
		return u.call(ctx, "", func(ctx context.Context, opts ...grpc.CallOption) error {
			_, err := rt.EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: u.refresh}, opts...)
			return err
		})
	case opGuarded:
		if t.kv == nil {
			return u.call(ctx, u.access, func(ctx context.Context, opts ...grpc.CallOption) error {
				_, err := rt.EvaluateIdentityPolicy(ctx, &pb.EvaluateIdentityPolicyRequest{
					Subject: u.subject, Tenant: "bench", Scope: "orders", Action: "read"}, opts...)
				return err
			})
		}
		actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+u.ext)
		if !u.put {
			if _, err := t.kv.Put(actx, &kvpb.PutRequest{Key: "k", Value: u.subject}); err != nil {
				return err
			}
			u.put = true
			return nil
		}
		res, err := t.kv.Get(actx, &kvpb.GetRequest{Key: "k"})
		if err != nil {
			return err
		}
		if res.GetValue() != u.subject {
			return fmt.Errorf("guarded Get returned another session's value")
		}
	}
	return nil
}

// benchWorker is one worker's private record of latencies and errors, merged at the end.
type benchWorker struct {
	lat   [numOps][]int64
	errs  [numOps]map[string]int64
	first [numOps]string
}

func (w *benchWorker) record(op int, d time.Duration, err error) {
	if err == nil {
		w.lat[op] = append(w.lat[op], int64(d))
		return
	}
	if w.errs[op] == nil {
		w.errs[op] = map[string]int64{}
	}
	code := "error"
	if s, ok := status.FromError(err); ok {
		code = s.Code().String()
	}
	w.errs[op][code]++
	if w.first[op] == "" {
		w.first[op] = err.Error()
	}
}

// progress draws the bar (or lines) on out while a phase runs.
type progress struct {
	mode  string
	out   io.Writer
	done  atomic.Int64
	fails atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newProgress(mode string, out io.Writer) *progress {
	if mode == "auto" {
		mode = "never"
		if f, ok := out.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			mode = "always"
		}
	}
	return &progress{mode: mode, out: out}
}

// phase shows progress towards total calls (when total > 0) or towards the end of d.
func (p *progress) begin(name string, total int64, d time.Duration) {
	p.done.Store(0)
	p.fails.Store(0)
	p.stop = make(chan struct{})
	if p.mode == "never" {
		return
	}
	start := time.Now()
	every := 200 * time.Millisecond
	if p.mode == "lines" {
		every = 5 * time.Second
	}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.draw(name, total, d, start, true)
				return
			case <-t.C:
				p.draw(name, total, d, start, false)
			}
		}
	})
}

func (p *progress) draw(name string, total int64, d time.Duration, start time.Time, last bool) {
	el := time.Since(start)
	frac := 0.0
	if total > 0 {
		frac = float64(p.done.Load()) / float64(total)
	} else {
		frac = el.Seconds() / d.Seconds()
	}
	frac = min(max(frac, 0), 1)
	const width = 30
	bar := strings.Repeat("█", int(frac*width)) + strings.Repeat("░", width-int(frac*width))
	rate := float64(p.done.Load()) / max(el.Seconds(), 1e-9)
	line := fmt.Sprintf("%-6s %s %3.0f%% %6.1fs  %d calls  %.0f/s  %d errors", name, bar, frac*100, el.Seconds(), p.done.Load(), rate, p.fails.Load())
	switch {
	case p.mode == "lines":
		fmt.Fprintln(p.out, line)
	case last:
		fmt.Fprintf(p.out, "\r%s\n", line)
	default:
		fmt.Fprintf(p.out, "\r%s", line)
	}
}

func (p *progress) end() {
	close(p.stop)
	p.wg.Wait()
}

func runBench(ctx context.Context, o benchOptions, stderr io.Writer) (*benchReport, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	weights, _ := parseMix(o.mix)
	dep, err := startDeployment(ctx, o, stderr)
	if err != nil {
		return nil, err
	}
	defer dep.close()

	users := make([]*benchUser, o.sessions)
	for i := range users {
		users[i] = &benchUser{subject: fmt.Sprintf("bench-user-%d", i)}
		if o.dpop {
			if users[i].key, err = dpop.GenerateKey(); err != nil {
				return nil, err
			}
		}
	}
	workers := make([]*benchWorker, o.concurrency)
	for i := range workers {
		workers[i] = &benchWorker{}
	}
	rep := &benchReport{Sessions: o.sessions, Concurrency: o.concurrency, Replicas: o.replicas, Store: "memory",
		Guarded: o.guardedBin != "" || o.guardedAddr != "", Mix: o.mix, Ops: map[string]*opReport{}, CPUs: runtime.NumCPU()}
	switch {
	case o.dpopNonce:
		rep.DPoP = "nonces"
	case o.dpop:
		rep.DPoP = "on"
	}
	switch {
	case o.redisURL != "":
		rep.Store = "redis"
	case o.postgresURL != "":
		rep.Store = "postgres"
	}
	if o.external() {
		rep.Replicas, rep.Store, rep.External = len(o.runtimeAddrs), "external", true
	}
	bar := newProgress(o.progress, stderr)
	queue := make(chan *benchUser, len(users))
	for _, u := range users {
		queue <- u
	}
	run := func(name string, total int64, d time.Duration, pick func(*rand.Rand, *benchUser) int, requeue bool) phaseReport {
		bar.begin(name, total, d)
		pctx := ctx
		cancel := context.CancelFunc(func() {})
		if d > 0 {
			pctx, cancel = context.WithTimeout(ctx, d)
		}
		defer cancel()
		start := time.Now()
		var calls atomic.Int64
		var wg sync.WaitGroup
		for wi, w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(wi), uint64(start.UnixNano())))
				for pctx.Err() == nil {
					var u *benchUser
					if requeue {
						select {
						case u = <-queue:
						case <-pctx.Done():
							return
						}
					} else {
						select {
						case u = <-queue:
						default:
							return // every session started
						}
					}
					op := pick(rng, u)
					cctx, ccancel := context.WithTimeout(context.WithoutCancel(pctx), 30*time.Second)
					t0 := time.Now()
					err := dep.target.step(cctx, rng, u, op)
					el := time.Since(t0)
					ccancel()
					w.record(op, el, err)
					calls.Add(1)
					bar.done.Add(1)
					if err != nil {
						bar.fails.Add(1)
					}
					if requeue {
						queue <- u
					}
				}
			})
		}
		wg.Wait()
		bar.end()
		el := time.Since(start)
		return phaseReport{Seconds: el.Seconds(), Calls: calls.Load(), Throughput: float64(calls.Load()) / el.Seconds()}
	}

	rep.StartPhase = run("start", int64(len(users)), 0, func(*rand.Rand, *benchUser) int { return opStart }, false)
	if ctx.Err() == nil {
		for _, u := range users {
			queue <- u
		}
		var total int
		for _, w := range weights {
			total += w
		}
		redisBefore := dep.redisCalls(ctx)
		rep.MixedPhase = run("mixed", 0, o.duration, func(rng *rand.Rand, u *benchUser) int {
			if !u.started {
				return opStart
			}
			n := rng.IntN(total)
			for op, w := range weights {
				if n < w {
					return op
				}
				n -= w
			}
			return opGuarded
		}, true)
		if redisBefore >= 0 {
			if after := dep.redisCalls(context.WithoutCancel(ctx)); after >= redisBefore {
				rep.redisDelta = after - redisBefore
			}
		}
	}
	rep.Interrupted = ctx.Err() != nil
	rep.RSSKiB = dep.rss()
	rep.merge(workers)
	if rep.redisDelta > 0 {
		runtimeCalls := rep.MixedPhase.Calls
		if rep.Guarded {
			runtimeCalls -= rep.guardedMixed
		}
		if runtimeCalls > 0 {
			rep.StoreCommandsPerCall = float64(rep.redisDelta) / float64(runtimeCalls)
			if rep.Store != "postgres" {
				rep.RedisCommandsPerCall = rep.StoreCommandsPerCall
			}
		}
	}
	return rep, nil
}

func (r *benchReport) merge(workers []*benchWorker) {
	elapsed := r.StartPhase.Seconds + r.MixedPhase.Seconds
	for op := range numOps {
		var all []int64
		or := &opReport{}
		for _, w := range workers {
			all = append(all, w.lat[op]...)
			for code, n := range w.errs[op] {
				if or.ErrorCodes == nil {
					or.ErrorCodes = map[string]int64{}
				}
				or.ErrorCodes[code] += n
				or.Errors += n
			}
			if or.FirstError == "" {
				or.FirstError = w.first[op]
			}
		}
		if len(all) == 0 && or.Errors == 0 {
			continue
		}
		slices.Sort(all)
		or.Count = int64(len(all)) + or.Errors
		if op == opStart {
			// starts happen in both phases; the rate is over the whole run
			or.Throughput = float64(or.Count) / elapsed
		} else {
			or.Throughput = float64(or.Count) / r.MixedPhase.Seconds
		}
		or.P50ms, or.P99ms, or.P999ms = quantileMs(all, 0.50), quantileMs(all, 0.99), quantileMs(all, 0.999)
		if len(all) > 0 {
			or.MaxMs = float64(all[len(all)-1]) / 1e6
		}
		r.Ops[opNames[op]] = or
		r.Calls += or.Count
		r.Errors += or.Errors
		if op == opGuarded {
			r.guardedMixed = or.Count
		}
	}
}

// quantileMs is the nearest-rank quantile q of sorted nanosecond samples, in milliseconds.
func quantileMs(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return float64(sorted[min(max(i, 0), len(sorted)-1)]) / 1e6
}

func (r *benchReport) print(out io.Writer) {
	store := "in-memory session store"
	switch r.Store {
	case "redis":
		store = "sessions shared through Redis"
	case "postgres":
		store = "sessions shared through PostgreSQL"
	case "external":
		store = "services started elsewhere"
	}
	target := "guarded calls: EvaluateIdentityPolicy on the runtime"
	if r.Guarded {
		target = "guarded calls: Put/Get on the guarded key-value service"
	}
	switch r.DPoP {
	case "on":
		target += ", sessions bound to DPoP keys (a proof on every call)"
	case "nonces":
		target += ", sessions bound to DPoP keys (a proof on every call, server nonces)"
	}
	fmt.Fprintf(out, "keyfort bench: %d sessions, %d in flight, %d serve replica(s), %s, %s, mix %s, %d CPU(s)\n",
		r.Sessions, r.Concurrency, r.Replicas, store, target, r.Mix, r.CPUs)
	fmt.Fprintf(out, "  start phase: %d sessions in %.2fs (%.0f/s)\n", r.StartPhase.Calls, r.StartPhase.Seconds, r.StartPhase.Throughput)
	fmt.Fprintf(out, "  mixed phase: %d calls in %.2fs (%.0f/s)\n", r.MixedPhase.Calls, r.MixedPhase.Seconds, r.MixedPhase.Throughput)
	fmt.Fprintf(out, "  %-8s %9s %7s %9s %9s %9s %9s %9s\n", "op", "calls", "errors", "calls/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms")
	for _, name := range opNames {
		or, ok := r.Ops[name]
		if !ok {
			continue
		}
		fmt.Fprintf(out, "  %-8s %9d %7d %9.0f %9.3f %9.3f %9.3f %9.3f\n", name, or.Count, or.Errors, or.Throughput, or.P50ms, or.P99ms, or.P999ms, or.MaxMs)
		for _, code := range slices.Sorted(maps.Keys(or.ErrorCodes)) {
			fmt.Fprintf(out, "           %s: %d\n", code, or.ErrorCodes[code])
		}
		if or.FirstError != "" {
			fmt.Fprintf(out, "           first error: %s\n", or.FirstError)
		}
	}
	if len(r.RSSKiB) > 0 {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(r.RSSKiB)) {
			parts = append(parts, fmt.Sprintf("%s %.1f MiB", name, float64(r.RSSKiB[name])/1024))
		}
		fmt.Fprintf(out, "  resident memory at the end: %s\n", strings.Join(parts, ", "))
	}
	switch {
	case r.Store == "postgres" && r.StoreCommandsPerCall > 0:
		fmt.Fprintf(out, "  postgres: %.2f statements per runtime call in the mixed phase\n", r.StoreCommandsPerCall)
	case r.StoreCommandsPerCall > 0:
		fmt.Fprintf(out, "  redis: %.2f commands per runtime call in the mixed phase\n", r.StoreCommandsPerCall)
	}
	if r.Interrupted {
		fmt.Fprintln(out, "  interrupted: the figures cover the part that ran")
	}
}

// deployment is the set of processes under load.
type deployment struct {
	dir      string
	keep     bool
	children []*benchChild
	conns    []*grpc.ClientConn
	target   *benchTarget
	redis    *redis.Client // external mode: Redis, for INFO commandstats
	// storeMetrics: the serve replicas started here share a store; their /metrics count its commands.
	storeMetrics bool
}

type benchChild struct {
	name string
	cmd  *exec.Cmd
	addr string // the address to dial: the ready pattern's last group
	http string // serve's HTTP address (metrics): the first of two groups
	done chan struct{}
}

var (
	serveReady   = regexp.MustCompile(`http=http://(127\.0\.0\.1:\d+) grpc=(127\.0\.0\.1:\d+)`)
	guardedReady = regexp.MustCompile(`guarded-kv: serving addr=(127\.0\.0\.1:\d+)`)
)

func startDeployment(ctx context.Context, o benchOptions, stderr io.Writer) (_ *deployment, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keyfort-bench-")
	if err != nil {
		return nil, err
	}
	d := &deployment{dir: dir, keep: o.keepLogs, target: &benchTarget{idp: "google"}}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if o.external() {
		if o.redisURL != "" {
			// Services started elsewhere: their store commands are Redis's own count.
			opt, err := redis.ParseURL(o.redisURL)
			if err != nil {
				return nil, fmt.Errorf("--redis-url: %w", err)
			}
			d.redis = redis.NewClient(opt)
		}
		return d, d.attach(o)
	}
	d.storeMetrics = o.redisURL != "" || o.postgresURL != ""
	const clientID = "keyfort-bench.apps.example"
	issuerKey, err := benchIssuerKey("", false)
	if err != nil {
		return nil, err
	}
	d.target.issuer, err = startBenchIssuer("127.0.0.1:0", clientID, issuerKey)
	if err != nil {
		return nil, err
	}
	signing, err := benchSigningKeyPEM()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`# written by provider-host bench
providers:
  shared:
    type: env
  dev:
    type: memory
    settings:
      credentials: { kv: { ttl: 15m } }
identity:
  secrets:
    session_signing: shared:BENCH_SESSION_SIGNING_KEY
    oidc:
      google:
        client_id: shared:BENCH_GOOGLE_CLIENT_ID
        issuer: %s
  credentials:
    kv_backend: dev:kv
  session:
    issuer: keyfort-bench
    audience: bench-api
%s  policy:
    rules:
      - { tenant: bench, action: read, effect: allow }
`, d.target.issuer.url, storeLine(o.redisURL, o.postgresURL))
	cfgPath := filepath.Join(dir, "keyfort.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYFORT_") {
			env = append(env, kv)
		}
	}
	env = append(env, "BENCH_SESSION_SIGNING_KEY="+signing, "BENCH_GOOGLE_CLIENT_ID="+clientID, "KEYFORT_PROVIDER_HOST="+self)
	if o.dpopNonce {
		env = append(env, "KEYFORT_IDENTITY__SESSION__DPOP__NONCE=true")
	}

	for i := range o.replicas {
		c, err := d.start(ctx, fmt.Sprintf("serve-%d", i), self, env, serveReady,
			"serve", "--config", cfgPath, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		cc, err := d.dial(c.addr)
		if err != nil {
			return nil, err
		}
		d.target.runtimes = append(d.target.runtimes, pb.NewIdentityRuntimeServiceClient(cc))
	}
	if o.guardedBin != "" {
		c, err := d.start(ctx, "guarded", o.guardedBin, env, guardedReady, "--config", cfgPath, "--addr", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		cc, err := d.dial(c.addr)
		if err != nil {
			return nil, err
		}
		d.target.kv = kvpb.NewKeyValueServiceClient(cc)
	}
	if o.keepLogs {
		fmt.Fprintf(stderr, "bench: configuration and logs in %s\n", dir)
	}
	return d, nil
}

// attach drives services started elsewhere, minting ID tokens with the key that the issuer they
// trust serves.
func (d *deployment) attach(o benchOptions) error {
	key, err := benchIssuerKey(o.issuerKey, false)
	if err != nil {
		return fmt.Errorf("--issuer-key: %w", err)
	}
	if d.target.issuer, err = newBenchIssuer(o.issuerURL, o.clientID, key); err != nil {
		return err
	}
	d.target.idp = o.idp
	for _, addr := range o.runtimeAddrs {
		cc, err := d.dial(addr)
		if err != nil {
			return err
		}
		d.target.runtimes = append(d.target.runtimes, pb.NewIdentityRuntimeServiceClient(cc))
	}
	if o.guardedAddr != "" {
		cc, err := d.dial(o.guardedAddr)
		if err != nil {
			return err
		}
		d.target.kv = kvpb.NewKeyValueServiceClient(cc)
	}
	return nil
}

// storeLine is the identity.session line of the shared store, if any.
func storeLine(redisURL, postgresURL string) string {
	switch {
	case redisURL != "":
		return fmt.Sprintf("    redis_url: %q\n", redisURL)
	case postgresURL != "":
		return fmt.Sprintf("    postgres_url: %q\n", postgresURL)
	}
	return ""
}

func (d *deployment) dial(addr string) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	d.conns = append(d.conns, cc)
	return cc, nil
}

// start runs a child process, logging its stderr to DIR/NAME.log, and waits for ready to match a
// line of it (whose first group is the address it listens on).
func (d *deployment) start(ctx context.Context, name, bin string, env []string, ready *regexp.Regexp, args ...string) (*benchChild, error) {
	logPath := filepath.Join(d.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	pipe, err := cmd.StderrPipe()
	if err != nil {
		_ = logFile.Close()
		return nil, err
	}
	cmd.Stdout = logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("bench: start %s (%s): %w", name, bin, err)
	}
	c := &benchChild{name: name, cmd: cmd, done: make(chan struct{})}
	d.children = append(d.children, c)
	addr := make(chan []string, 1)
	go func() {
		defer close(c.done)
		defer logFile.Close()
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			_, _ = fmt.Fprintln(logFile, sc.Text())
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1:]:
				default:
				}
			}
		}
		_ = cmd.Wait()
	}()
	timer := time.NewTimer(2 * time.Minute)
	defer timer.Stop()
	select {
	case groups := <-addr:
		c.addr = groups[len(groups)-1]
		if len(groups) > 1 {
			c.http = groups[0]
		}
		return c, nil
	case <-c.done:
		tail, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("bench: %s exited before serving (%s); its log:\n%s", name, cmd.ProcessState, lastLines(string(tail), 20))
	case <-timer.C:
		return nil, fmt.Errorf("bench: %s did not start serving within 2 minutes; its log is %s", name, logPath)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// redisCalls is the number of Redis commands the runtime has sent, or -1 when it cannot be known:
// for replicas started here, the sum of their keyfort_session_store_commands_total (what the
// guarded service sends to the same Redis is not in it); for services started elsewhere, the
// commands Redis has served (INFO commandstats, INFO itself excluded), which counts every client of
// that Redis.
func (d *deployment) redisCalls(ctx context.Context) int64 {
	if d.storeMetrics {
		var total int64
		for _, c := range d.children {
			if c.http == "" {
				continue
			}
			n, err := storeCommands(ctx, "http://"+c.http+"/metrics")
			if err != nil {
				return -1
			}
			total += n
		}
		return total
	}
	if d.redis == nil {
		return -1
	}
	info, err := d.redis.Info(ctx, "commandstats").Result()
	if err != nil {
		return -1
	}
	var total int64
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_info" {
			continue
		}
		n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		total += n
	}
	return total
}

// storeCommands sums keyfort_session_store_commands_total in the Prometheus text at url.
func storeCommands(ctx context.Context, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "keyfort_session_store_commands_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q", url, line)
		}
		total += v
	}
	return int64(total), sc.Err()
}

// rss is each child's resident set size in KiB (Linux; empty elsewhere).
func (d *deployment) rss() map[string]int64 {
	out := map[string]int64{}
	for _, c := range d.children {
		if c.cmd.Process == nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				out[c.name] = n
			}
		}
	}
	return out
}

func (d *deployment) close() {
	for _, cc := range d.conns {
		_ = cc.Close()
	}
	for _, c := range d.children {
		_ = c.cmd.Process.Signal(os.Interrupt)
	}
	for _, c := range d.children {
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	if d.target.issuer != nil {
		d.target.issuer.close()
	}
	if d.redis != nil {
		_ = d.redis.Close()
	}
	if !d.keep {
		_ = os.RemoveAll(d.dir)
	}
}
